"""Fine-tuned PRM data at any scale: Show-o step images labelled by roll-outs (imagegen_cot.md §5; Math-Shepherd style).

"Condition Show-o on the step-i image, roll out **4** completions for the remaining steps, and label step i 'yes' if
**any** final image is judged 'yes'" (§5; 13K prompts x 18 intermediate images). :func:`build_prm_data` samples
``paths_per_prompt`` paths of every metadata line with :func:`reward_models.rollouts.sample_paths`, rolls out
``rollouts`` completions from each of ``rollout_steps`` and judges every completion with the injected
:class:`~reward_models.rollouts.Labeller` (at real scale ``eval.geneval.labeller.GenevalLabeller``: GenEval's detector,
colour classifier and judge). With ``label_final`` the last step's image -- the final image, its own only roll-out --
is labelled by its verdict, so a path gives the paper's every-step images.

Output folder (``out``):

* ``prm.jsonl`` + ``images/<id>.png`` -- :func:`reward_models.data.prm_example` examples, what
  ``scripts/train_judge.py judge_data=prm`` reads (:func:`reward_models.data.read_examples`);
* ``rollouts.jsonl`` -- one record per example: ``id``, ``line``, ``path``, ``seed``, ``step`` (0-based), ``label`` and
  ``verdicts`` (``[{correct, reason}]`` of its roll-outs, or of the final image), so every label can be recomputed;
* ``lines/<line:05d>.jsonl`` -- the same records per metadata line, written when the line is done: a rerun skips done
  lines (resumable per line); ``summary.json`` -- counts per step.

Ids: ``<line:05d>_p<path:02d>_s<step:02d>``. Path ``(i, k)`` is seeded ``image_seed(seed, i, k)``; roll-outs
:func:`reward_models.rollouts.rollout_seed` -- nothing depends on the batch size or on which lines were resumed.
"""
from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from common.io import atomic_write_json, atomic_write_text
from common.seeding import image_seed
from reward_models.data import prm_example, save_image, write_examples
from reward_models.rollouts import Labeller, PathSample, StepLabel, sample_paths

__all__ = ["PRMDataConfig", "build_prm_data", "path_records"]


@dataclass(frozen=True)
class PRMDataConfig:
    """What the data is sampled with. ``rollout_steps`` are 0-based and below ``num_inference_steps - 1`` (a roll-out
    of the last step would be the path itself); ``None`` = every such step (the paper)."""

    num_inference_steps: int = 18
    guidance_scale: float = 1.75
    paths_per_prompt: int = 1
    rollout_steps: tuple[int, ...] | None = None
    rollouts: int = 4
    label_final: bool = True
    seed: int = 0
    batch_size: int = 4

    def steps(self) -> tuple[int, ...]:
        last = self.num_inference_steps - 1
        steps = tuple(range(last)) if self.rollout_steps is None else tuple(int(s) for s in self.rollout_steps)
        bad = [s for s in steps if not 0 <= s < last]
        if bad:
            raise ValueError(f"rollout_steps {bad} must lie in [0, {last - 1}] (0-based, the last step excluded) for "
                             f"num_inference_steps={self.num_inference_steps}")
        return tuple(sorted(set(steps)))


def _verdicts(outcomes) -> list[dict]:
    return [{"correct": bool(o.verdict.correct), "reason": str(o.verdict.reason)} for o in outcomes]


def path_records(sample: PathSample, root: Path, num_steps: int, label_final: bool) -> list[dict]:
    """The labelled steps of one path, their images written under ``root/images``: one record per roll-out step
    (label = any roll-out accepted) and, with ``label_final``, the last step (label = the final verdict)."""
    records = []
    name = f"{sample.line:05d}_p{sample.index:02d}"
    steps = [(s, sample.step_images[s], outs) for s, outs in sorted(sample.rollouts.items())]
    if label_final:
        steps.append((num_steps - 1, sample.final.image, [sample.final]))
    for step, image, outcomes in steps:
        id = f"{name}_s{step:02d}"
        verdicts = _verdicts(outcomes)
        records.append({"id": id, "line": sample.line, "path": sample.index, "seed": sample.seed, "step": step,
                        "image": save_image(image, root, id), "label": any(v["correct"] for v in verdicts),
                        "verdicts": verdicts})
    return records


def _line_file(root: Path, line: int) -> Path:
    return root / "lines" / f"{line:05d}.jsonl"


def _read_records(path: Path) -> list[dict]:
    return [json.loads(text) for text in path.read_text(encoding="utf-8").splitlines() if text.strip()]


def _sample_lines(pipe, lines: Sequence[dict], todo: Sequence[int], labeller: Labeller, config: PRMDataConfig,
                  out: Path) -> None:
    steps = set(config.steps())
    per_batch = max(1, config.batch_size // config.paths_per_prompt)  # whole lines per batch: resumable per line
    for start in range(0, len(todo), per_batch):
        chunk = todo[start: start + per_batch]
        jobs = [(i, k) for i in chunk for k in range(config.paths_per_prompt)]
        samples = sample_paths(pipe, lines, jobs, lambda i, k: image_seed(config.seed, i, k), labeller=labeller,
                               guidance_scale=config.guidance_scale, num_steps=config.num_inference_steps,
                               keep=lambda i, k: steps, rollout_steps=lambda i, k: steps, rollouts=config.rollouts,
                               seed=config.seed, batch_size=config.batch_size)
        by_line: dict[int, list[dict]] = {i: [] for i in chunk}
        for sample in samples:
            by_line[sample.line] += path_records(sample, out, config.num_inference_steps, config.label_final)
        for i, records in by_line.items():
            atomic_write_text(_line_file(out, i), "".join(json.dumps(r) + "\n" for r in records))
        print(f"prm data: {start + len(chunk)}/{len(todo)} lines", flush=True)


def build_prm_data(pipe, lines: Sequence[dict], labeller: Labeller, out: str | Path, config: PRMDataConfig) -> dict:
    """Sample, roll out, label and write the PRM data of ``lines`` (GenEval metadata dicts with ``prompt``) into
    ``out`` (module docstring); lines already done there are kept. Returns the summary written to ``summary.json``."""
    out = Path(out)
    if config.paths_per_prompt < 1 or config.rollouts < 1 or config.batch_size < 1:
        raise ValueError(f"paths_per_prompt, rollouts and batch_size must be >= 1, got {config.paths_per_prompt}, "
                         f"{config.rollouts}, {config.batch_size}")
    config.steps()  # a bad step is named before anything is sampled
    todo = [i for i in range(len(lines)) if not _line_file(out, i).is_file()]
    _sample_lines(pipe, lines, todo, labeller, config, out)
    records = [r for i in range(len(lines)) for r in _read_records(_line_file(out, i))]
    examples = [prm_example(r["id"], lines[r["line"]]["prompt"], r["image"], StepLabel(r["label"])) for r in records]
    write_examples(out / "prm.jsonl", examples)
    atomic_write_text(out / "rollouts.jsonl", "".join(json.dumps(r) + "\n" for r in records))
    per_step = Counter((r["step"], r["label"]) for r in records)
    summary = {"lines": len(lines), "examples": len(records), "yes": sum(r["label"] for r in records),
               "per_step": {str(s): {"yes": per_step[s, True], "no": per_step[s, False]}
                            for s in sorted({s for s, _ in per_step})},
               "config": {**config.__dict__, "rollout_steps": list(config.steps())}}
    atomic_write_json(out / "summary.json", summary)
    return summary
