"""Test-time scaling from one stored candidate pool ("generate once, select many", :mod:`search.pool`): every
selection policy at every N, with the generator and judge forward passes it would spend, scored without regenerating.

A pick's correctness comes from ``verdict(entry, index) -> (task, correct)``: the GenEval record of the exported
candidate (``scripts/pool_report.py``), or in the shapes world the exact verdict stored in the pool itself
(``entry.named_scores["oracle"]``, :func:`stored_verdict`). The score is GenEval's macro-average over tasks
(:func:`eval.stats.geneval_score`).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import torch

from common.io import atomic_write_json
from eval.geneval.layout import write_prompt_folder
from eval.stats import geneval_score
from search.pool import FirstPolicy, OrmPolicy, ParmPolicy, PoolEntry, RandomPolicy, ScorePolicy

__all__ = ["default_policies", "evaluate_policies", "powers_of_two", "stored_verdict", "write_policy_images"]

Verdict = Callable[[PoolEntry, int], tuple[str, bool]]


def powers_of_two(max_n: int) -> list[int]:
    """1, 2, 4, ... up to ``max_n`` (and ``max_n`` itself)."""
    ns, n = [], 1
    while n < max_n:
        ns.append(n)
        n *= 2
    return ns + [max_n]


def default_policies(ns: Iterable[int], oracle: str | None = None) -> list:
    """The baseline, then ORM best-of-N, PARM and random picks at every N (and ``oracle`` best-of-N when named)."""
    out = [FirstPolicy()]
    for n in ns:
        out += [OrmPolicy(n), ParmPolicy(n), RandomPolicy(n)]
        if oracle is not None:
            out.append(ScorePolicy(oracle, n, judge_passes_per_candidate=0))
    return out


def stored_verdict(tasks: dict[int, str], judge: str = "oracle") -> Verdict:
    """Correctness from the exact verdicts stored in the pool (``entry.named_scores[judge]``, 1.0 = accepted);
    ``tasks``: prompt index -> GenEval task."""
    def verdict(entry: PoolEntry, index: int) -> tuple[str, bool]:
        return tasks[entry.slot.prompt_index], entry.named_scores[judge][index] > 0.5
    return verdict


def evaluate_policies(entries: Sequence[PoolEntry], policies: Sequence, verdict: Verdict | None = None) -> list[dict]:
    """One row per policy: its picks, mean generator / judge forward passes per slot and (with ``verdict``) the
    GenEval score of the picked candidates. A policy the pool cannot serve (e.g. no PARM records) is left out."""
    rows = []
    for policy in policies:
        try:
            picks = [policy.select(e) for e in entries]
        except ValueError:
            continue
        judge = [p.judge_passes for p in picks]
        row = {"policy": policy.name, "picks": [p.index for p in picks],
               "forward_passes": sum(p.forward_passes for p in picks) / len(picks),
               "judge_passes": None if None in judge else sum(judge) / len(judge)}
        if verdict is not None:
            row["geneval"] = geneval_score({(e.slot.prompt_index, e.slot.sample_index): verdict(e, p.index)
                                            for e, p in zip(entries, picks)})
        rows.append(row)
    return rows


def write_policy_images(entries: Sequence[PoolEntry], policy, decode: Callable, specs: Mapping[int, Any],
                        out_dir: str | os.PathLike) -> dict:
    """A policy's picks as a GenEval image folder (``out_dir/images``) and ``out_dir/cost.json``: the row of the table
    that policy is, without generating again. ``decode``: tokens [K, N] -> K images (the generator's one decode
    path); ``specs``: prompt index -> its :class:`~eval.geneval.prompts.PromptSpec`. Picking candidate ``c`` of a
    pool is the live strategy with the same seeds (:mod:`search.pool`), so the images are the live search's."""
    out_dir = Path(out_dir)
    by_prompt: dict[int, list[tuple[PoolEntry, Any]]] = {}
    for entry in entries:
        by_prompt.setdefault(entry.slot.prompt_index, []).append((entry, policy.select(entry)))
    passes = judge = 0
    for index, picked in sorted(by_prompt.items()):
        picked.sort(key=lambda ep: ep[0].slot.sample_index)
        tokens = torch.stack([e.tokens[p.index] for e, p in picked])
        cots = [(e.extras.get("cots") or [None] * e.size)[p.index] for e, p in picked]  # Janus-Pro's plans
        write_prompt_folder(out_dir / "images", specs[index], decode(tokens),
                            cots=cots if any(c is not None for c in cots) else None)
        passes += sum(p.forward_passes for _, p in picked)
        judge += sum(p.judge_passes or 0 for _, p in picked)
    cost = {"slots": len(entries), "policy": policy.name, "generator_forward_passes": passes,
            "judge_forward_passes": judge}
    atomic_write_json(out_dir / "cost.json", cost)
    return cost
