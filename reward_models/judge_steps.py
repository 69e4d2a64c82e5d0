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
"""
from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from common.seeding import hash_seed, image_seed
from reward_models.data import clarity_steps, potential_example, save_image, write_examples
from reward_models.rollouts import Labeller, sample_paths

__all__ = ["POTENTIAL_STEPS", "build_judge_steps", "clear_steps"]

POTENTIAL_STEPS = "potential_steps.jsonl"


def clear_steps(num_steps: int) -> list[int]:
    """0-based steps the static clarity rule calls clear (1-based step > ``yes_after``), the last step excluded."""
    yes_after, _ = clarity_steps(num_steps)
    return list(range(yes_after, num_steps - 1))


def build_judge_steps(pipe, lines: Sequence[dict], labeller: Labeller, out: str | Path, *, per_line: int,
                      steps_per_path: int, seed: int, guidance_scale: float, num_steps: int,
                      batch_size: int = 32) -> dict[str, Any]:
    """Sample ``per_line`` paths of every line, save the chosen clear steps' images under ``out/images/`` and write
    :data:`POTENTIAL_STEPS`, line-balanced; returns the counts (paths, accepted, examples, yes, per tag)."""
    candidates = clear_steps(num_steps)
    if per_line < 1 or batch_size < 1 or not 1 <= steps_per_path <= len(candidates):
        raise ValueError(f"build_judge_steps: per_line, batch_size >= 1 and steps_per_path in [1, {len(candidates)}] "
                         f"(the clear steps of {num_steps}) needed, got {per_line}, {batch_size}, {steps_per_path}")

    def chosen(i: int, k: int) -> set[int]:
        return set(random.Random(hash_seed("potential-steps", seed, i, k)).sample(candidates, steps_per_path))

    root = Path(out)
    jobs = [(i, k) for i in range(len(lines)) for k in range(per_line)]
    by_line: list[list] = [[] for _ in lines]
    for p in tqdm(sample_paths(pipe, lines, jobs, lambda i, k: image_seed(seed, i, k), labeller=labeller,
                               guidance_scale=guidance_scale, num_steps=num_steps, keep=chosen, seed=seed,
                               batch_size=batch_size),
                  total=len(jobs), desc="judge data: potential steps", dynamic_ncols=True):
        by_line[p.line].append(p)
    yes_after, _ = clarity_steps(num_steps)
    examples = []
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
        for p in sorted(rng.sample(good, n) + rng.sample(bad, n), key=lambda p: p.index):
            kept[line["tag"]] += 1
            for step in sorted(p.step_images):
                name = f"{i:05d}_t{p.index:03d}_s{step:02d}"
                path = save_image(p.step_images[step], root, name)
                examples.append(potential_example(name, line["prompt"], path, step + 1, p.final.verdict,
                                                  yes_after=yes_after))
    write_examples(root / POTENTIAL_STEPS, examples)
    return {"paths": sum(paths.values()), "accepted": sum(accepted.values()), "examples": len(examples),
            "yes": sum(ex.conversation[-1]["content"] == "yes" for ex in examples),
            "by_tag": {tag: {"paths": n, "accepted": accepted[tag], "kept_paths": kept[tag]}
                       for tag, n in paths.items()}}
