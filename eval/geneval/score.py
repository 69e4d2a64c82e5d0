"""GenEval aggregation (reference §15; official ``evaluation/summary_scores.py``).

Overall score = unweighted mean over the six tasks of each task's **per-image** accuracy. Missing images are never
hidden: the summary records expected vs evaluated counts per task and warns loudly when they differ, and a task
with no evaluated image makes the overall score ``None`` rather than a mean over fewer tasks.
"""
from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass
from typing import Any, Iterable, Mapping, Sequence

from eval.geneval.prompts import TASKS, PromptSpec
from eval.results import read_jsonl


class MissingImagesWarning(UserWarning):
    """Fewer images were evaluated than the benchmark expects: scores are not comparable with published ones."""


@dataclass(frozen=True)
class TaskScore:
    task: str
    expected: int | None  # images the benchmark defines for this task (None: unknown)
    evaluated: int
    correct: int

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.evaluated if self.evaluated else None


@dataclass(frozen=True)
class Summary:
    """Scores of one evaluation. ``overall`` is None when a task has no evaluated image."""

    tasks: tuple[TaskScore, ...]
    overall: float | None
    total_images: int
    total_prompts: int
    correct_images: float  # fraction of all images correct (printed by the official script; not the headline)
    correct_prompts: float  # fraction of prompts with at least one correct image
    expected_images: int | None
    missing_images: int

    def task_accuracies(self) -> dict[str, float | None]:
        return {t.task: t.accuracy for t in self.tasks}

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["tasks"] = {t.task: {**asdict(t), "accuracy": t.accuracy} for t in self.tasks}
        for t in out["tasks"].values():
            del t["task"]
        return out


def expected_counts(prompts: Sequence[PromptSpec], images_per_prompt: int = 4) -> dict[str, int]:
    """Images per task the benchmark defines (official: 320/396/320/376/400/400 for 553 prompts × 4)."""
    counts: dict[str, int] = {}
    for spec in prompts:
        counts[spec.tag] = counts.get(spec.tag, 0) + images_per_prompt
    order = {t: i for i, t in enumerate(TASKS)}
    return dict(sorted(counts.items(), key=lambda kv: order.get(kv[0], len(order))))


def summarize(records: Iterable[Mapping[str, Any]], expected: Mapping[str, int] | None = None) -> Summary:
    """Aggregate per-image records (``tag``, ``correct``, ``metadata`` as in ``results.jsonl``).

    ``expected`` maps task -> number of images the benchmark defines; when given, every task listed is part of the
    overall mean (a task with zero evaluated images makes ``overall`` None) and shortfalls raise a
    ``MissingImagesWarning`` with the counts. Without it, the tasks present are averaged (official behaviour).
    """
    records = list(records)
    evaluated: dict[str, int] = {}
    correct: dict[str, int] = {}
    prompt_ok: dict[str, bool] = {}
    for rec in records:
        tag = rec["tag"]
        evaluated[tag] = evaluated.get(tag, 0) + 1
        correct[tag] = correct.get(tag, 0) + bool(rec["correct"])
        key = rec["metadata"] if isinstance(rec["metadata"], str) else json.dumps(rec["metadata"])
        prompt_ok[key] = prompt_ok.get(key, False) or bool(rec["correct"])
    names = list(expected) if expected is not None else []
    names += sorted((t for t in evaluated if t not in names), key=lambda t: (TASKS.index(t) if t in TASKS else 99, t))
    tasks = tuple(
        TaskScore(t, None if expected is None else expected.get(t), evaluated.get(t, 0), correct.get(t, 0))
        for t in names
    )
    accuracies = [t.accuracy for t in tasks]
    overall = None if not tasks or any(a is None for a in accuracies) else sum(accuracies) / len(accuracies)
    n = len(records)
    expected_total = None if expected is None else sum(expected.values())
    missing = 0 if expected is None else sum(max((t.expected or 0) - t.evaluated, 0) for t in tasks)
    if missing:
        short = {t.task: f"{t.evaluated}/{t.expected}" for t in tasks if t.expected and t.evaluated < t.expected}
        warnings.warn(
            f"GenEval: {missing} of {expected_total} expected images were not evaluated (evaluated/expected per "
            f"task: {short}); scores are NOT comparable with published GenEval numbers",
            MissingImagesWarning,
            stacklevel=2,
        )
    return Summary(
        tasks=tasks,
        overall=overall,
        total_images=n,
        total_prompts=len(prompt_ok),
        correct_images=sum(correct.values()) / n if n else 0.0,
        correct_prompts=sum(prompt_ok.values()) / len(prompt_ok) if prompt_ok else 0.0,
        expected_images=expected_total,
        missing_images=missing,
    )


def read_results(path) -> list[dict[str, Any]]:
    """Records of a ``results.jsonl`` (ours or the official one); errors name file and line."""
    return read_jsonl(path)
