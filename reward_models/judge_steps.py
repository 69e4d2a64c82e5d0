"""PARM's potential data the paper's way, from the generator's own paths in bulk (issue 13; imagegen_cot.md §6.4).

The paper labels a potential example with **its path's final verdict** ("images from steps after 11, labelled with the
final yes / no label of their path"). :mod:`reward_models.judge_data` labels its few roll-out steps by their
roll-outs instead; on the tiny Show-o's training prompts (about 12 % of final images accepted) that gives 5 % "yes"
among step images, and a PARM trained on it answers "no potential" for almost every held-out path. This module adds
what is cheap to have many of (``JudgeDataConfig.steps_per_line``): ``per_line`` paths per training line, each

* decoded at ``steps_per_path`` of its **clear** steps (after the static clarity rule's ``yes_after``, before the
  last step, whose image is the final one: ORM data), drawn per path from its own seed;
* labelled with the path's final verdict by the injected exact ``labeller``;

and keeps, **per line, as many "yes" as "no" paths** (all of the rarer answer, the same number of the other, a seeded
choice), so that, as in ``orm.jsonl``, the prompt alone tells the judge nothing. Output: :data:`POTENTIAL_STEPS`
(potential examples in the follow-up layout of :func:`reward_models.data.potential_example`, ids
``<line:05d>_t<k:03d>_s<step:02d>``). Path ``k`` of line ``i`` is drawn with its own generator seeded
``image_seed(seed, i, k)``, so the file does not depend on ``batch_size``.

``clear_from`` (1-based) moves where a world's step images count as clear. The static rule is the paper's 11 of 18
steps scaled to the step count (step 8 of 12), but how early a step image shows what its path will end with is a
property of the generator: the tiny Show-o (12 steps over 8 x 8 codes) commits its objects last, and on its training
prompts the step-8 image is accepted for 27 % of the paths that end accepted, the step-11 image for 63 %
(docs/shapes_world.md). ``clear_from=11`` keeps potential examples at step 11 only.

With ``extras=True`` the same paths also give a PARM every other task it is asked, so that a PARM can be fine-tuned
from an ORM on them alone (``scripts/build_parm_data.py``):

* :data:`STEPS_FINALS`: every path's final image with the ORM question and its exact verdict (as unbalanced as the
  generator: the images the final answer ranks at test time), ids ``<line>_t<k>_f``;
* :data:`STEPS_CLARITY`: per kept path, its clear step images "yes" and the predicted image of one step the static
  rule calls unclear (drawn per path) "no" (:func:`reward_models.data.clarity_example` with the world's rule);
* :data:`STEPS_REFLECTION`: the kept paths' final images as PARM++ reflection examples ("no" + the exact judge's
  reasons, :func:`reward_models.data.reflection_example`), line-balanced like the potential examples;
* :data:`STEPS_SELF_CORRECTION` (a folder, :func:`showo.self_correction.write_self_correction_groups`): PARM++'s
  self-correction groups, one per rejected path of a line with an accepted one: (prompt, the exact judge's reasons,
  the rejected path's codes, the codes of one of the line's accepted paths, taken in turn). Targets are the
  generator's own accepted images only, never a rendering: the corrector learns to make what the generator makes
  when it succeeds.

``potential_label="rollouts"`` labels the potential examples by roll-outs instead (the paper's PRM labels,
:mod:`reward_models.rollouts`: "yes" iff any of ``rollouts`` completions of the step ends accepted), balanced per line
by that label over every path; measured worse than the path's own verdict on the shapes world
(docs/shapes_world.md, "PARM's potential answer and what the step image can tell").

``balance=False`` keeps every path instead of a line-balanced subset (potential, clarity and reflection examples as
unbalanced as the generator, about 13 % "yes" on the tiny Show-o's training prompts): several times the examples, and
the base rate the potential answer meets at test time.
"""
from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from common.seeding import hash_seed, image_seed
from reward_models.data import (clarity_example, clarity_steps, correction_groups, orm_example, potential_example,
                                reflection_example, save_image, write_examples)
from reward_models.rollouts import Labeller, StepLabel, sample_paths
from showo.self_correction import write_self_correction_groups

__all__ = ["POTENTIAL_STEPS", "STEPS_CLARITY", "STEPS_FINALS", "STEPS_REFLECTION", "STEPS_SELF_CORRECTION",
           "build_judge_steps", "checked_clear_steps", "clarity_rule", "clear_steps"]

POTENTIAL_STEPS = "potential_steps.jsonl"
STEPS_FINALS = "steps_finals.jsonl"
STEPS_CLARITY = "steps_clarity.jsonl"
STEPS_REFLECTION = "steps_reflection.jsonl"
STEPS_SELF_CORRECTION = "steps_self_correction"


def clarity_rule(num_steps: int, clear_from: int | None = None) -> tuple[int, int]:
    """``(yes_after, no_before)`` (1-based) of a world's clarity rule: the static rule's
    (:func:`reward_models.data.clarity_steps`), with ``yes_after = clear_from - 1`` when ``clear_from`` is given
    (steps before the static ``no_before`` stay unclear, the ones between unlabelled)."""
    yes_after, no_before = clarity_steps(num_steps)
    if clear_from is None:
        return yes_after, no_before
    if not no_before <= clear_from <= num_steps:
        raise ValueError(f"clear_from = {clear_from}: a 1-based step in [{no_before}, {num_steps}] is needed (from the "
                         "static rule's first step not called unclear to the last)")
    return clear_from - 1, no_before


def clear_steps(num_steps: int, clear_from: int | None = None) -> list[int]:
    """0-based steps the clarity rule calls clear (1-based step > ``yes_after``), the last step excluded."""
    yes_after, _ = clarity_rule(num_steps, clear_from)
    return list(range(yes_after, num_steps - 1))


def checked_clear_steps(num_steps: int, steps_per_path: int, clear_from: int | None = None) -> list[int]:
    """:func:`clear_steps`, checked to hold ``steps_per_path`` of them (a recipe calls it before writing anything)."""
    candidates = clear_steps(num_steps, clear_from)
    if not 1 <= steps_per_path <= len(candidates):
        raise ValueError(f"steps_per_path = {steps_per_path}: {num_steps} steps have {len(candidates)} clear step(s) "
                         f"before the last (0-based {candidates}); steps_per_path in [1, {len(candidates)}] needed")
    return candidates


def build_judge_steps(pipe, lines: Sequence[dict], labeller: Labeller, out: str | Path, *, per_line: int,
                      steps_per_path: int, seed: int, guidance_scale: float, num_steps: int,
                      batch_size: int = 32, clear_from: int | None = None, extras: bool = False,
                      balance: bool = True, potential_label: str = "final", rollouts: int = 4) -> dict[str, Any]:
    """Sample ``per_line`` paths of every line, save the chosen clear steps' images under ``out/images/`` and write
    :data:`POTENTIAL_STEPS`, line-balanced (``balance=False``: every path, as unbalanced as the generator; with
    ``extras``, also :data:`STEPS_FINALS`, :data:`STEPS_CLARITY` and :data:`STEPS_REFLECTION`); returns the counts
    (paths, accepted, examples, yes, per tag, and per extra file).

    ``potential_label``: ``"final"`` labels a potential example with its path's final verdict (the paper's PARM data);
    ``"rollouts"`` with ``rollouts`` completions of its step (:mod:`reward_models.rollouts`, fresh seeds; "yes" iff any
    ends accepted: the paper's PRM labels, what "has the potential to iterate to an image that satisfies the prompt"
    asks), and the line balance of the potential examples is then by that label, over every path of the line (the
    other files keep the paths balanced by the final verdict, so they do not depend on the choice)."""
    if per_line < 1 or batch_size < 1:
        raise ValueError(f"build_judge_steps: per_line and batch_size >= 1 needed, got {per_line}, {batch_size}")
    if potential_label not in ("final", "rollouts") or rollouts < 1:
        raise ValueError(f"build_judge_steps: potential_label 'final' or 'rollouts' and rollouts >= 1 needed, got "
                         f"{potential_label!r}, {rollouts}")
    candidates = checked_clear_steps(num_steps, steps_per_path, clear_from)
    yes_after, no_before = clarity_rule(num_steps, clear_from)
    unclear = list(range(no_before - 1))  # 0-based steps the rule calls unclear (1-based < no_before)
    if extras and not unclear:
        raise ValueError(f"build_judge_steps(extras=True): the clarity rule of {num_steps} steps has no unclear step")

    def chosen(i: int, k: int) -> set[int]:
        rng = random.Random(hash_seed("potential-steps", seed, i, k))
        steps = set(rng.sample(candidates, steps_per_path))
        return steps | {rng.choice(unclear)} if extras else steps

    root = Path(out)
    jobs = [(i, k) for i in range(len(lines)) for k in range(per_line)]
    by_line: list[list] = [[] for _ in lines]

    def rolled(i: int, k: int) -> set[int]:  # the potential steps of a path, rolled out for their labels
        return {s for s in chosen(i, k) if s + 1 > yes_after} if potential_label == "rollouts" else set()

    for p in tqdm(sample_paths(pipe, lines, jobs, lambda i, k: image_seed(seed, i, k), labeller=labeller,
                               guidance_scale=guidance_scale, num_steps=num_steps, keep=chosen,
                               rollout_steps=rolled, rollouts=rollouts, seed=seed, batch_size=batch_size),
                  total=len(jobs), desc="judge data: potential steps", dynamic_ncols=True):
        by_line[p.line].append(p)
    examples, extra = [], {STEPS_FINALS: [], STEPS_CLARITY: [], STEPS_REFLECTION: []}
    groups: list[tuple[str, str, torch.Tensor, torch.Tensor]] = []
    paths: Counter = Counter()
    accepted: Counter = Counter()
    kept: Counter = Counter()
    for i, samples in enumerate(by_line):
        line = lines[i]
        paths[line["tag"]] += len(samples)
        good = [p for p in samples if p.final.verdict.correct]
        bad = [p for p in samples if not p.final.verdict.correct]
        accepted[line["tag"]] += len(good)
        n = min(len(good), len(bad))
        rng = random.Random(hash_seed("potential-balance", seed, i))
        keep = {p.index for p in rng.sample(good, n) + rng.sample(bad, n)} if balance else {p.index for p in samples}
        potential = _potential_labels(samples, yes_after, potential_label, balance,
                                      random.Random(hash_seed("potential-rollout-balance", seed, i)), keep)
        if extras:
            groups += correction_groups(line["prompt"], [(f"line {i} path {p.index}", p.final.verdict, p.final.tokens)
                                                         for p in bad], [p.final.tokens for p in good])
        for p in samples:
            if extras:
                name = f"{i:05d}_t{p.index:03d}_f"
                final = save_image(p.final.image, root, name)
                extra[STEPS_FINALS].append(orm_example(name, line["prompt"], final, p.final.verdict))
                if p.index in keep:
                    extra[STEPS_REFLECTION].append(reflection_example(name, line["prompt"], final, p.final.verdict))
            if p.index not in keep and not any((p.index, step) in potential for step in p.step_images):
                continue
            kept[line["tag"]] += p.index in keep
            for step in sorted(p.step_images):
                if (p.index, step) not in potential and p.index not in keep:
                    continue  # a roll-out-labelled path outside the balanced set: only its potential steps
                name = f"{i:05d}_t{p.index:03d}_s{step:02d}"
                path = save_image(p.step_images[step], root, name)
                if (p.index, step) in potential:
                    examples.append(potential_example(name, line["prompt"], path, step + 1, potential[p.index, step],
                                                      yes_after=yes_after))
                clarity = clarity_example(name, line["prompt"], path, step + 1, yes_after=yes_after,
                                          no_before=no_before) if extras and p.index in keep else None
                if clarity is not None:
                    extra[STEPS_CLARITY].append(clarity)
    write_examples(root / POTENTIAL_STEPS, examples)
    counts = {"paths": sum(paths.values()), "accepted": sum(accepted.values()), "examples": len(examples),
              "yes": _yes(examples), "clear_from": yes_after + 1, "potential_label": potential_label,
              "by_tag": {tag: {"paths": n, "accepted": accepted[tag], "kept_paths": kept[tag]}
                         for tag, n in paths.items()}}
    if extras:
        for name, items in extra.items():
            write_examples(root / name, items)
            counts[name] = {"examples": len(items), "yes": _yes(items, first=name == STEPS_REFLECTION)}
        write_self_correction_groups(root / STEPS_SELF_CORRECTION, groups, pipe.layout.num_image_tokens)
        counts[STEPS_SELF_CORRECTION] = {"examples": len(groups)}
    return counts


def _potential_labels(samples, yes_after: int, how: str, balance: bool, rng: random.Random,
                      keep: set[int]) -> dict[tuple[int, int], Any]:
    """``(path index, 0-based step) -> label`` of a line's potential examples: the kept paths' clear steps with their
    path's final verdict (``how="final"``), or every path's rolled-out steps with their roll-out label, per line as
    many "yes" as "no" examples when ``balance`` (a seeded choice)."""
    if how == "final":
        return {(p.index, s): p.final.verdict for p in samples if p.index in keep for s in p.step_images
                if s + 1 > yes_after}
    labelled = [((p.index, s), StepLabel(p.rollout_label(s))) for p in samples for s in sorted(p.rollouts)]
    if not balance:
        return dict(labelled)
    yes = [x for x in labelled if x[1].correct]
    no = [x for x in labelled if not x[1].correct]
    n = min(len(yes), len(no))
    return dict(rng.sample(yes, n) + rng.sample(no, n))


def _yes(examples, first: bool = False) -> int:
    """Examples whose last (``first``: first) assistant answer is "yes" (a reflection's first answer is its verdict,
    its last the explanation)."""
    answers = [[t["content"] for t in ex.conversation if t["role"] == "assistant"] for ex in examples]
    return sum(a[0 if first else -1] == "yes" for a in answers)
