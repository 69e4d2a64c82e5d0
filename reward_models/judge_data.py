"""Judge training data that forces the judge to look at the image (issue 13 item 2; imagegen_cot.md §4.2, §5, §6.4, §7).

For every training line (GenEval-style metadata: ``prompt``, ``tag``, ``include`` ...) the builder gathers images of
the **same prompt** with both answers, so that the prompt alone tells the judge nothing:

* the Show-o's own paths (``paths_per_line``, tag-balanced by ``paths_per_tag``) and the final images of their
  roll-outs, labelled by the injected exact ``labeller``;
* rendered ground truth (``scenes(line, "ground_truth", seed)``) and rendered near misses, one thing wrong
  (``scenes(line, kind, seed)`` for ``kind`` in ``scenes.kinds``), every one passed through the Show-o's tokenizer
  (encode + decode) so it carries the generated images' artefacts, and labelled by the ``labeller`` **after** the
  round trip (a near miss that is still right is a "yes").

Per line, ``examples_per_line`` (tag-balanced by ``examples_per_tag``) ORM examples are kept, **half yes, half no**
(:func:`balance`: own images first, then roll-outs, near misses that are still right, ground truth; at least
``near_miss_share`` of the "no" side are near misses, so clean renders sit on both sides). The tasks' files (the
format ``scripts/train_judge.py`` reads, :mod:`reward_models.data`):

* ``orm.jsonl``: the balanced final images, "yes" iff accepted (§4.2);
* ``prm.jsonl``: the predicted image of each roll-out step of the first ``rollout_paths_per_line`` paths of a line,
  labelled the paper's way (§5): "yes" iff **any** of ``rollouts`` completions from that step (fresh seeds) ends
  accepted; with ``final_as_process`` also the balanced final images (a final image's roll-out is itself);
* ``clarity.jsonl``: predicted images of ``clarity_steps_per_path`` random steps of every path, the static rule of §6.4
  scaled to the number of steps (:func:`clarity_steps`);
* ``potential.jsonl``: the clear roll-out steps (after ``yes_after``), labelled by their roll-outs; with
  ``final_as_process`` also the balanced final images;
* ``reflection.jsonl``: the balanced final images, "no" + the verdict's reasons as the explanation (§7);
* ``describe.jsonl`` (with a ``describer``): the balanced and every own final image -> a text description of its
  objects (not in the paper: the caption pre-training a from-scratch tiny judge lacks, see
  ``reward_models.questions.DESCRIBE_QUESTION``);
* ``self_correction/``: one group per rejected own path: its codes, its explanation and a good image of the same
  prompt (an accepted own path, else an accepted roll-out, else an accepted ground-truth render), the
  :mod:`showo.self_correction` format;
* with ``finals_per_line``: ``finals.jsonl`` / ``finals_describe.jsonl``, the Show-o's own final images in bulk
  (:mod:`reward_models.judge_finals`: unbalanced, labelled and described exactly; what a judge ranks at test time);
* with ``steps_per_line``: ``potential_steps.jsonl``, PARM's potential data the paper's way (§6.4): clear step images
  of the Show-o's own paths labelled with their path's final verdict, line-balanced (:mod:`reward_models.judge_steps`);
* ``lines.jsonl``: the lines used (``index``, ``prompt``, ``tag``); every example id starts with ``<index:05d>_``.

Nothing here knows the shapes world: the labeller and the scene source are injected (``scripts/build_judge_data.py``
wires ``eval.shapes.perturb``), so this module imports no ``eval`` / ``search`` code. Everything is seeded from
``seed`` and the (line, path, step, roll-out, scene) indices, so the data is a function of its arguments.
"""
from __future__ import annotations

import json
import math
import os
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from PIL import Image
from tqdm import tqdm

from common.io import atomic_write_text
from reward_models.data import (clarity_example, clarity_steps, correction_groups, describe_example, orm_example,
                                potential_example, prm_example, reflection_example, save_image, write_examples)
from reward_models.judge_finals import build_judge_finals
from reward_models.judge_steps import build_judge_steps
from reward_models.rollouts import Labeller, PathSample, StepLabel, load_paths, sample_paths, save_paths
from showo.data import tokenize_images
from showo.magvit import image_transform
from showo.pipeline import ShowoPipeline
from showo.scheduler import MaskGITScheduler
from common.seeding import hash_seed, image_seed
from showo.self_correction import write_self_correction_groups

__all__ = ["GROUND_TRUTH", "Item", "JudgeDataConfig", "SceneSource", "balance", "build_judge_data", "clarity_steps",
           "per_line_counts"]

GROUND_TRUTH = "ground_truth"
TASK_FILES = ("orm", "prm", "clarity", "potential", "reflection", "describe")
SELF_CORRECTION_DIR = "self_correction"
PATHS_CACHE = "paths.pt"  # the sampled Show-o paths as codes (reused when the path settings match)
# Which images a balanced line keeps first: the Show-o's own paths, then its roll-outs, then renders.
SOURCE_PRIORITY = ("path", "rollout", "near_miss", GROUND_TRUTH)


class SceneSource(Protocol):
    """Rendered scenes of a line (e.g. ``eval.shapes.perturb.SceneRenderer``): ``source(line, kind, seed)`` -> a PIL
    image or ``None`` (kind not applicable / not placeable); ``kind`` is ``"ground_truth"`` or one of ``kinds``."""

    kinds: tuple[str, ...]

    def __call__(self, line: dict, kind: str, seed: int) -> Image.Image | None:
        ...


@dataclass(frozen=True)
class JudgeDataConfig:
    """Sizes and sampling of :func:`build_judge_data` (0-based steps; see the module docstring)."""

    num_inference_steps: int = 12
    guidance_scale: float = 3.0
    seed: int = 1
    batch_size: int = 16
    paths_per_line: int = 4
    paths_per_tag: int = 0
    rollout_paths_per_line: int = 1
    rollout_lines_per_tag: int | None = None
    rollout_steps: tuple[int, ...] = (2, 7, 9)
    rollouts: int = 4
    clarity_steps_per_path: int = 2
    examples_per_line: int = 16
    examples_per_tag: int = 0
    near_miss_share: float = 0.5
    render_rounds: int = 4
    final_as_process: bool = True
    finals_per_line: int = 0      # own final images per line in bulk (reward_models.judge_finals; 0: none) ...
    finals_seed: int = 7          # ... seeded image_seed(finals_seed, i, k): not ``seed``, whose images are the paths'
    finals_batch_size: int = 64   # ... (does not change the images)
    steps_per_line: int = 0       # own paths per line, PARM's potential data (reward_models.judge_steps; 0: none) ...
    steps_per_path: int = 2       # ... clear steps kept per path ...
    steps_seed: int = 11          # ... seeded image_seed(steps_seed, i, k)

    def __post_init__(self) -> None:
        object.__setattr__(self, "rollout_steps", tuple(int(s) for s in self.rollout_steps))
        bad = [s for s in self.rollout_steps if not 0 <= s < self.num_inference_steps - 1]
        if bad:
            raise ValueError(f"JudgeDataConfig.rollout_steps {bad} must lie in [0, {self.num_inference_steps - 2}] "
                             f"(0-based; the last step's roll-out is the path itself)")
        if self.finals_per_line and self.finals_seed == self.seed:
            raise ValueError(f"JudgeDataConfig.finals_seed = seed = {self.seed}: the finals would repeat the paths' "
                             "images; pick another finals_seed")
        if self.steps_per_line and self.steps_seed in (self.seed, self.finals_seed):
            raise ValueError(f"JudgeDataConfig.steps_seed = {self.steps_seed} is also seed or finals_seed: the "
                             "potential steps would repeat those images; pick another steps_seed")
        if self.steps_per_line < 0:
            raise ValueError(f"JudgeDataConfig: steps_per_line >= 0 needed, got {self.steps_per_line}")
        if self.finals_per_line < 0 or self.finals_batch_size < 1:
            raise ValueError(f"JudgeDataConfig: finals_per_line >= 0 and finals_batch_size >= 1 needed, got "
                             f"{self.finals_per_line}, {self.finals_batch_size}")
        if self.examples_per_line < 2 or self.paths_per_line < 1 or self.rollouts < 0:
            raise ValueError(f"JudgeDataConfig: examples_per_line >= 2, paths_per_line >= 1 and rollouts >= 0 needed, "
                             f"got {self.examples_per_line}, {self.paths_per_line}, {self.rollouts}")


@dataclass
class Item:
    """One labelled final image of a line: ``source`` in :data:`SOURCE_PRIORITY`, ``kind`` the near-miss kind."""

    name: str
    image: Image.Image
    verdict: Any
    source: str
    tokens: torch.Tensor | None = None
    kind: str | None = None

    @property
    def correct(self) -> bool:
        return bool(self.verdict.correct)


def per_line_counts(lines: Sequence[dict], per_line: int, per_tag: int = 0) -> list[int]:
    """``per_line`` for every line, raised so that every tag gets about ``per_tag`` in all
    (``ceil(per_tag / lines of the tag)``; ``0`` turns balancing off)."""
    tags = Counter(line["tag"] for line in lines)
    return [max(per_line, math.ceil(per_tag / tags[line["tag"]])) for line in lines]


def rollout_lines(lines: Sequence[dict], per_tag: int | None) -> set[int]:
    """Indices of the lines whose first paths are rolled out: the first ``per_tag`` lines of every tag (all when
    ``None``; roll-outs cost ``rollouts x`` the remaining steps, the dearest part of the data)."""
    seen: Counter = Counter()
    chosen = set()
    for i, line in enumerate(lines):
        seen[line["tag"]] += 1
        if per_tag is None or seen[line["tag"]] <= per_tag:
            chosen.add(i)
    return chosen


def balance(items: Sequence[Item], per_label: int, near_miss_share: float = 0.0) -> list[Item]:
    """At most ``per_label`` "yes" and as many "no" items of one line; both sides are cut to the smaller one, so a
    kept line always has as many positives as negatives.

    Positives come in :data:`SOURCE_PRIORITY` order (own paths, roll-outs, near misses that are still right, ground
    truth); negatives are ``ceil(near_miss_share * per_label)`` near misses (more if the own images run out) and own
    images for the rest, so clean renders appear on both sides and "clean" never means "yes". Stable within a source.
    """
    rank = {s: r for r, s in enumerate(SOURCE_PRIORITY)}
    ordered = sorted(items, key=lambda it: rank[it.source])
    yes = [it for it in ordered if it.correct][:per_label]
    near = [it for it in ordered if not it.correct and it.source == "near_miss"]
    own = [it for it in ordered if not it.correct and it.source != "near_miss"]
    n_near = min(len(near), max(math.ceil(near_miss_share * per_label), per_label - len(own)))
    no = near[:n_near] + own[: per_label - n_near]
    n = min(len(yes), len(no))
    return yes[:n] + no[:n]


def roundtrip(pipe: ShowoPipeline, images: Sequence[Image.Image]) -> tuple[torch.Tensor, list[Image.Image]]:
    """Encode + decode square images with the pipeline's MAGVIT-v2: ``(codes [M, N], decoded images)``."""
    pixels = torch.stack([image_transform(im, im.size[0]) for im in images])
    device = next(pipe.vq_model.parameters()).device
    with torch.no_grad():
        codes = tokenize_images(pipe.vq_model, pixels.to(device))
        return codes.cpu(), pipe.decode(codes)


def _scene_requests(line_index: int, kinds: Sequence[str], start: int, n_truth: int, n_near: int, seed: int
                    ) -> list[tuple[str, int, str]]:
    """``(kind, seed, name)`` of the next ``n_truth`` ground-truth and ``n_near`` near-miss renders (attempts are
    numbered from ``start``: the names and seeds of a round never repeat those of an earlier one)."""
    out = []
    for a in range(start, start + n_truth):
        out.append((GROUND_TRUTH, hash_seed("scene", seed, line_index, GROUND_TRUTH, a), f"{line_index:05d}_gt{a:04d}"))
    for a in range(start, start + n_near):
        kind = kinds[a % len(kinds)]
        out.append((kind, hash_seed("scene", seed, line_index, "near", a), f"{line_index:05d}_nm{a:04d}_{kind}"))
    return out


def render_items(pipe: ShowoPipeline, line_index: int, line: dict, need_yes: int, need_no: int, scenes: SceneSource,
                 labeller: Labeller, config: JudgeDataConfig) -> list[Item]:
    """Ground truth and near misses of one line, round-tripped and labelled, until ``need_yes`` positives and
    ``need_no`` near-miss negatives are found or ``config.render_rounds`` rounds have run (near misses: twice the
    missing count per round, since some come out right)."""
    items: list[Item] = []
    start = 0
    for _ in range(config.render_rounds):
        yes = sum(it.correct for it in items)
        n_truth, n_near = max(0, need_yes - yes), 2 * max(0, need_no - (len(items) - yes))
        if n_truth == 0 and n_near == 0:
            break
        requests = _scene_requests(line_index, scenes.kinds, start, n_truth, n_near, config.seed)
        start += max(n_truth, n_near)
        rendered = [(kind, name, scenes(line, kind, s)) for kind, s, name in requests]
        rendered = [(kind, name, im) for kind, name, im in rendered if im is not None]
        if not rendered:
            continue
        codes, images = roundtrip(pipe, [im for _, _, im in rendered])
        for (kind, name, _), tokens, image in zip(rendered, codes, images):
            source = GROUND_TRUTH if kind == GROUND_TRUTH else "near_miss"
            items.append(Item(name, image, labeller(line, image), source, tokens, None if kind == GROUND_TRUTH else kind))
    return items


def _path_name(sample: PathSample, step: int | None = None, rollout: int | None = None) -> str:
    name = f"{sample.line:05d}_p{sample.index:02d}"
    if step is not None:
        name += f"_s{step:02d}"
    if rollout is not None:
        name += f"_r{rollout}"
    return name


def own_items(samples: Sequence[PathSample]) -> list[Item]:
    """The final images of a line's paths (source ``"path"``) and of their roll-outs (``"rollout"``)."""
    items = [Item(_path_name(p), p.final.image, p.final.verdict, "path", p.final.tokens) for p in samples]
    for p in samples:
        for step, outcomes in sorted(p.rollouts.items()):
            items += [Item(_path_name(p, step, r), o.image, o.verdict, "rollout", o.tokens)
                      for r, o in enumerate(outcomes)]
    return items


def _clarity_choice(config: JudgeDataConfig, i: int, k: int) -> set[int]:
    rng = torch.Generator().manual_seed(image_seed(config.seed + 7919, i, k))
    return set(torch.randperm(config.num_inference_steps, generator=rng)[: config.clarity_steps_per_path].tolist())


# What the sampled paths depend on (a cached sampling is reused only when all of them and the prompts match).
_PATH_FIELDS = ("num_inference_steps", "guidance_scale", "seed", "paths_per_line", "paths_per_tag",
                "rollout_paths_per_line", "rollout_lines_per_tag", "rollout_steps", "rollouts", "clarity_steps_per_path")


def run_paths(pipe: ShowoPipeline, lines: Sequence[dict], labeller: Labeller, config: JudgeDataConfig,
              cache: str | os.PathLike | None = None) -> list[list[PathSample]]:
    """Every line's own paths (``paths_per_line`` / ``paths_per_tag``), the first ``rollout_paths_per_line`` of the
    first ``rollout_lines_per_tag`` lines of every tag with roll-outs at ``rollout_steps``; path ``(i, k)`` is seeded ``image_seed(seed, i, k)``. With ``cache``
    (a file) the sampled codes are stored there and reused by a later call with the same prompts and path settings
    (:func:`reward_models.rollouts.save_paths`): the renders and the balance can be rebuilt without sampling again."""
    counts = per_line_counts(lines, config.paths_per_line, config.paths_per_tag)
    jobs = [(i, k) for i, n in enumerate(counts) for k in range(n)]
    rolled, lines_rolled = set(config.rollout_steps), rollout_lines(lines, config.rollout_lines_per_tag)

    def rollout_steps(i: int, k: int) -> set[int]:
        return rolled if k < config.rollout_paths_per_line and i in lines_rolled else set()

    jobs.sort(key=lambda job: (not rollout_steps(*job), job))  # roll-out paths batch together

    def keep(i: int, k: int) -> set[int]:
        return _clarity_choice(config, i, k) | rollout_steps(i, k)

    meta = {"prompts": [line["prompt"] for line in lines], "jobs": jobs,
            **{name: list(value) if isinstance(value, tuple) else value for name, value in _config_dict(config).items()
               if name in _PATH_FIELDS}}
    flat = None if cache is None else load_paths(cache, meta, pipe, lines, labeller)
    if flat is None:
        flat = list(tqdm(sample_paths(pipe, lines, jobs, lambda i, k: image_seed(config.seed, i, k), labeller=labeller,
                                      guidance_scale=config.guidance_scale, num_steps=config.num_inference_steps,
                                      keep=keep, rollout_steps=rollout_steps, rollouts=config.rollouts,
                                      seed=config.seed, batch_size=config.batch_size),
                         total=len(jobs), desc="judge data: Show-o paths", dynamic_ncols=True))
        if cache is not None:
            save_paths(flat, cache, meta)
    samples: list[list[PathSample]] = [[] for _ in lines]
    for sample in flat:
        samples[sample.line].append(sample)
    for line_samples in samples:
        line_samples.sort(key=lambda p: p.index)
    return samples


def _final_examples(prompt: str, kept: Sequence[Item], root: Path, examples: dict[str, list], config: JudgeDataConfig
                    ) -> None:
    yes_after, _ = clarity_steps(config.num_inference_steps)
    for item in kept:
        path = save_image(item.image, root, item.name)
        examples["orm"].append(orm_example(item.name, prompt, path, item.verdict))
        examples["reflection"].append(reflection_example(item.name, prompt, path, item.verdict))
        if config.final_as_process:  # a final image is its own only roll-out
            examples["prm"].append(prm_example(item.name, prompt, path, item.verdict))
            examples["potential"].append(potential_example(item.name, prompt, path, config.num_inference_steps,
                                                           item.verdict, yes_after=yes_after))


def _step_examples(prompt: str, samples: Sequence[PathSample], root: Path, examples: dict[str, list],
                   config: JudgeDataConfig) -> None:
    yes_after, no_before = clarity_steps(config.num_inference_steps)
    for p in samples:
        for step, outcomes in sorted(p.rollouts.items()):
            name = _path_name(p, step)
            path = save_image(p.step_images[step], root, name)
            label = StepLabel(p.rollout_label(step))
            examples["prm"].append(prm_example(name, prompt, path, label))
            ex = potential_example(name, prompt, path, step + 1, label, yes_after=yes_after)
            if ex is not None:
                examples["potential"].append(ex)
        for step in sorted(_clarity_choice(config, p.line, p.index)):
            name = _path_name(p, step)
            ex = clarity_example(name, prompt, f"images/{name}.png", step + 1, yes_after=yes_after,
                                 no_before=no_before)
            if ex is not None:
                save_image(p.step_images[step], root, name)
                examples["clarity"].append(ex)


def _describe_examples(kept: Sequence[Item], own: Sequence[Item], root: Path, examples: dict[str, list],
                       describer: Callable[[Image.Image], str]) -> None:
    """Caption examples of the kept images and of every own final image (the Show-o's and its roll-outs')."""
    names = {it.name for it in kept}
    for item in [*kept, *(it for it in own if it.name not in names)]:
        path = save_image(item.image, root, item.name)
        examples["describe"].append(describe_example(item.name, path, describer(item.image)))


def _good_tokens(items: Sequence[Item]) -> list[torch.Tensor]:
    """A line's accepted images for self-correction targets: own paths, then roll-outs, then ground truth."""
    for source in ("path", "rollout", GROUND_TRUTH):
        good = [it.tokens for it in items if it.source == source and it.correct and it.tokens is not None]
        if good:
            return good
    return []


def _groups(prompt: str, items: Sequence[Item]) -> list[tuple[str, str, torch.Tensor, torch.Tensor]]:
    """``(prompt, explanation, bad codes, good codes)`` for every rejected own path of a line with a good image."""
    rejected = [(f"path {it.name}", it.verdict, it.tokens) for it in items if it.source == "path" and not it.correct]
    return correction_groups(prompt, rejected, _good_tokens(items))


def _answer_counts(task: str, items: Sequence) -> dict[str, int]:
    answer = -1 if task == "potential" else 1  # potential: the turn after the clarity "yes"
    return {"examples": len(items), "yes": sum(ex.conversation[answer]["content"] == "yes" for ex in items)}


def _write(root: Path, lines: Sequence[dict], examples: dict[str, list], groups: list, sources: Counter,
           num_image_tokens: int, config: JudgeDataConfig, finals: dict | None = None,
           steps: dict | None = None) -> dict[str, Any]:
    counts: dict[str, Any] = {task: _answer_counts(task, items) for task, items in examples.items()}
    if finals is not None:
        counts["finals"] = finals
    if steps is not None:
        counts["potential_steps"] = steps
    for task, items in examples.items():
        write_examples(root / f"{task}.jsonl", items)
    write_self_correction_groups(root / SELF_CORRECTION_DIR, groups, num_image_tokens)
    counts[SELF_CORRECTION_DIR] = {"examples": len(groups)}
    counts["orm_sources"] = {f"{source}/{'yes' if ok else 'no'}": n for (source, ok), n in sorted(sources.items())}
    atomic_write_text(root / "lines.jsonl", "".join(json.dumps({"index": i, "prompt": line["prompt"], "tag": line["tag"]})
                                               + "\n" for i, line in enumerate(lines)))
    atomic_write_text(root / "summary.json", json.dumps({"counts": counts, "config": _config_dict(config),
                                                    "lines": len(lines)}, indent=1) + "\n")
    return counts


def _config_dict(config: JudgeDataConfig) -> dict:
    return {name: getattr(config, name) for name in config.__dataclass_fields__}


@torch.no_grad()
def build_judge_data(bundle, lines: Sequence[dict], labeller: Labeller, scenes: SceneSource,
                     root: str | os.PathLike, config: JudgeDataConfig = JudgeDataConfig(),
                     describer: Callable[[Image.Image], str] | None = None) -> dict[str, Any]:
    """Write every task's examples for ``lines`` under ``root`` (see the module docstring); returns the counts
    ``{task: {"examples", "yes"}, "self_correction": {...}, "orm_sources": {"<source>/<yes|no>": n}}``, also saved as
    ``root/summary.json``.

    ``bundle`` is a Show-o bundle with its MAGVIT-v2 (``bundle.pipeline``); ``lines`` must be *training* lines only:
    the recipe passes the suite's training space, never the eval split. ``describer`` (image -> text, e.g.
    ``eval.shapes.perturb.ShapesDescriber``) adds ``describe.jsonl`` (empty without it).
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    pipe = bundle.pipeline(MaskGITScheduler())
    if pipe.vq_model is None:
        raise ValueError("build_judge_data needs a Show-o bundle with its MAGVIT-v2 (vq/): renders are round-tripped")
    paths = run_paths(pipe, lines, labeller, config, root / PATHS_CACHE)
    per_line = per_line_counts(lines, config.examples_per_line, config.examples_per_tag)
    examples: dict[str, list] = {task: [] for task in TASK_FILES}
    groups: list = []
    sources: Counter = Counter()
    for i, line in enumerate(tqdm(lines, desc="judge data: renders + examples", dynamic_ncols=True)):
        per_label = per_line[i] // 2
        own = own_items(paths[i])
        items = list(own)
        yes = sum(it.correct for it in items)
        near = max(math.ceil(config.near_miss_share * per_label), per_label - (len(items) - yes))
        items += render_items(pipe, i, line, max(0, per_label - yes), near, scenes, labeller, config)
        kept = balance(items, per_label, config.near_miss_share)
        sources.update((it.source, it.correct) for it in kept)
        _final_examples(line["prompt"], kept, root, examples, config)
        _step_examples(line["prompt"], paths[i], root, examples, config)
        if describer is not None:
            _describe_examples(kept, own, root, examples, describer)
        groups += _groups(line["prompt"], items)
    finals = None
    if config.finals_per_line:
        finals = build_judge_finals(pipe, lines, labeller, root, per_line=config.finals_per_line,
                                    seed=config.finals_seed, batch_size=config.finals_batch_size, describer=describer,
                                    sampling={"guidance_scale": config.guidance_scale,
                                              "num_inference_steps": config.num_inference_steps})
    steps = None
    if config.steps_per_line:
        steps = build_judge_steps(pipe, lines, labeller, root, per_line=config.steps_per_line,
                                  steps_per_path=config.steps_per_path, seed=config.steps_seed,
                                  guidance_scale=config.guidance_scale, num_steps=config.num_inference_steps,
                                  batch_size=config.batch_size)
    return _write(root, lines, examples, groups, sources, bundle.layout.num_image_tokens, config, finals, steps)
