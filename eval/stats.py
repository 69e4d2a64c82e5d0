"""Differences between two rows of a table with error bars: a paired, two-stage bootstrap of the GenEval score.

Two rows of the miniature table judge the same slots (prompt ``i``, sample ``k``) of the same held-out prompts, so the
difference of their scores is estimated *paired*: every bootstrap replicate draws one resample of the slots and scores
both rows on it. The GenEval score is a macro-average over tasks (:func:`geneval_score`), and the resample follows
that structure:

1. within every task, draw its prompts with replacement (a task's prompts are its units of generalisation; the
   repeats of one prompt, ``units``, are one prompt);
2. within every drawn prompt, draw its sample slots with replacement (a task with one or two prompts still varies
   through its images instead of showing zero variance).

The interval is the percentile interval of the replicated differences (``level`` 0.95 by default). Replicates use a
seeded ``numpy.random.Generator``, so an interval is a function of its inputs.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Hashable, Mapping, Sequence

import numpy as np

__all__ = ["Interval", "best_of_n_slots", "geneval_score", "paired_bootstrap", "prompt_units", "slot_verdicts"]

Slot = tuple[int, int]  # (prompt index, sample index)


@dataclass(frozen=True)
class Interval:
    """``estimate`` of a difference (method - baseline) with its bootstrap interval ``[low, high]``."""

    estimate: float
    low: float
    high: float
    level: float
    replicates: int

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    def to_json(self) -> dict:
        return {"estimate": self.estimate, "low": self.low, "high": self.high, "level": self.level,
                "replicates": self.replicates}


def slot_verdicts(records: Sequence[Mapping]) -> dict[Slot, tuple[str, bool]]:
    """``(prompt index, sample index) -> (task, correct)`` from GenEval ``results.jsonl`` records (file names end in
    ``<prompt:05d>/samples/<k:04d>.png``)."""
    return {_slot_of(rec): (rec["tag"], bool(rec["correct"])) for rec in records}


def prompt_units(records: Sequence[Mapping]) -> dict[int, str]:
    """``prompt index -> prompt text`` from GenEval ``results.jsonl`` records: the ``units`` of :func:`paired_bootstrap`
    (a metadata line repeated for more images, :func:`eval.shapes.suite.repeat_per_task`, counts as one prompt)."""
    return {_slot_of(rec)[0]: str(rec["prompt"]) for rec in records}


def _slot_of(rec: Mapping) -> Slot:
    parts = str(rec["filename"]).replace("\\", "/").split("/")
    return int(parts[-3]), int(parts[-1].split(".")[0])


def best_of_n_slots(records: Sequence[Mapping], scores: Sequence[float], n: int
                    ) -> tuple[dict[Slot, tuple[str, bool]], dict[Slot, tuple[str, bool]], dict[Slot, tuple[str, bool]]]:
    """Best-of-``n`` replayed on stored images as rows of a table: every prompt's images (GenEval ``results.jsonl``
    records, one ``score`` each) cut into consecutive chunks of ``n`` samples; chunk ``c`` of prompt ``i`` is slot
    ``(i, c)``. Returns ``(baseline, picked, oracle)`` slot verdicts: the chunk's first image (one sample of that
    seed), the top-scored image (the first on ties), and "any image of the chunk accepted". Incomplete chunks are
    dropped."""
    verdicts = list(slot_verdicts(records).items())  # record order, one per image
    if len(verdicts) != len(scores):
        raise ValueError(f"{len(scores)} scores for {len(verdicts)} distinct (prompt, sample) slots of "
                         f"{len(records)} records")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    chunks: dict[Slot, list] = defaultdict(list)
    for ((prompt, sample), (task, correct)), score in zip(verdicts, scores):
        chunks[prompt, sample // n].append((sample, task, correct, float(score)))
    baseline, picked, oracle = {}, {}, {}
    for slot, items in sorted(chunks.items()):
        if len(items) < n:
            continue
        items.sort()
        best = max(range(n), key=lambda i: (items[i][3], -i))
        task = items[0][1]
        baseline[slot], picked[slot] = (task, items[0][2]), (task, items[best][2])
        oracle[slot] = (task, any(item[2] for item in items))
    return baseline, picked, oracle


def geneval_score(verdicts: Mapping[Slot, tuple[str, bool]]) -> float:
    """The GenEval overall score: the mean over tasks of each task's accuracy over its images."""
    by_task: dict[str, list[bool]] = defaultdict(list)
    for task, correct in verdicts.values():
        by_task[task].append(correct)
    return float(np.mean([np.mean(v) for v in by_task.values()]))


def paired_bootstrap(baseline: Mapping[Slot, tuple[str, bool]], method: Mapping[Slot, tuple[str, bool]],
                     replicates: int = 2000, level: float = 0.95, seed: int = 0,
                     units: Mapping[int, Hashable] | None = None) -> Interval:
    """Interval of ``geneval_score(method) - geneval_score(baseline)`` over the slots both rows judged.

    ``units``: prompt index -> the prompt it samples (e.g. its text); indices of one unit are resampled together as
    one prompt (a metadata line repeated for more images, :func:`eval.shapes.suite.repeat_per_task`, is more samples
    of its prompt, not another prompt). ``None``: every index is its own prompt."""
    if set(baseline) != set(method):
        missing = sorted(set(baseline) ^ set(method))[:5]
        raise ValueError(f"the two rows judged different slots (e.g. {missing}); a paired comparison needs the same")
    if not baseline:
        raise ValueError("no judged slots to compare")
    if units is not None and (missing := sorted({i for i, _ in baseline} - set(units))):
        raise ValueError(f"units names no prompt for prompt indices {missing[:5]}")
    # [task][prompt] -> array of (baseline, method) correctness over its slots, prompts in order of first index
    tasks: dict[str, dict[Hashable, list[tuple[bool, bool]]]] = defaultdict(dict)
    for slot in sorted(baseline):
        task = baseline[slot][0]
        unit = slot[0] if units is None else units[slot[0]]
        tasks[task].setdefault(unit, []).append((baseline[slot][1], method[slot][1]))
    groups = [[np.asarray(pairs, dtype=np.float64) for pairs in prompts.values()]
              for _, prompts in sorted(tasks.items())]
    rng = np.random.default_rng(seed)
    diffs = np.empty(replicates)
    for r in range(replicates):
        total = np.zeros(2)
        for prompts in groups:
            picked = rng.integers(0, len(prompts), len(prompts))
            sums, count = np.zeros(2), 0
            for p in picked:
                slots = prompts[p]
                draw = slots[rng.integers(0, len(slots), len(slots))]
                sums += draw.sum(axis=0)
                count += len(slots)
            total += sums / count
        diffs[r] = (total[1] - total[0]) / len(groups)
    estimate = geneval_score(method) - geneval_score(baseline)
    alpha = (1 - level) / 2
    low, high = np.quantile(diffs, [alpha, 1 - alpha])
    return Interval(float(estimate), float(low), float(high), level, replicates)
