"""PARM's pruning replayed from per-step records of a candidate pool's paths (issue 13: what the potential judgment
gains or costs against best-of-N, and what a perfect judge of the step image could reach).

A :class:`StepRecord` holds, for one path of a slot, what ``scripts/parm_pruning.py`` measured at every step: the
exact verdict of the step's predicted image, and per judge its clarity and potential P("yes") at every step and its
final answer. The pickers below choose a path of a slot from those numbers alone, as the live strategies would, and
return the generator forward passes the live strategy would spend (one per step of a path; a pruned path stops after
the step it was pruned at; a pruned path picked as the fallback is resumed for the steps it had left, as
:class:`search.pool.ParmPolicy` counts it):

=====================  ===================================================================================
:func:`parm_pick`      the PARM procedure (paper §6.1): first clear step (from ``clarity_from``), potential
                       there; survivors by the final answer; none: the lowest P("no") (never clear: 1.0)
:func:`prune_pick`     prune at one step by a boolean per path (e.g. the exact verdict of the step image),
                       survivors by a score; none: the score over every path
=====================  ===================================================================================

Answers are P("yes") normalised over the yes / no pair; "yes" iff it exceeds 1/2 (the judge's greedy answer).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

__all__ = ["JudgeSteps", "StepRecord", "parm_pick", "prune_pick", "records_from_json", "records_to_json"]


@dataclass
class JudgeSteps:
    """One judge's answers about one path, per 0-based step (``None`` where not asked): P("yes") normalised over the
    yes / no pair to the clarity and potential questions, and the potential answer's raw P("no") (the fallback key);
    the raw P("yes") to the final question on the final image (the selection score), as :class:`reward_models.parm.Parm`
    uses them; optionally the normalised P("yes") to the final question asked of each step's image before the last
    (``step_final``, ``None`` at the last step, whose image the final answer judges: how well the judge reads what a
    step image shows, and pruning by that reading)."""

    clarity: list[float | None]
    potential: list[float | None]
    potential_no: list[float | None]
    final: float
    step_final: list[float | None] | None = None


@dataclass
class StepRecord:
    """One path: the exact verdict of every step's predicted image (the last one is the final image's) and each
    judge's :class:`JudgeSteps`."""

    verdict: list[bool]
    judges: dict[str, JudgeSteps] = field(default_factory=dict)

    @property
    def num_steps(self) -> int:
        return len(self.verdict)


def _argmax(values: Sequence[float], among: Sequence[int]) -> int:
    return max(among, key=lambda i: (values[i], -i))  # the first on ties


def parm_pick(paths: Sequence[StepRecord], judge: str, clarity_from: int = 0) -> tuple[int, int]:
    """``(picked path, generator forward passes)`` of the PARM procedure with ``judge``'s answers, clarity asked from
    0-based step ``clarity_from``; a path without potential stops after its potential step (truncation)."""
    if not paths:
        raise ValueError("parm_pick: no paths")
    survivors, p_no, stopped, passes = [], [], [], 0
    for i, path in enumerate(paths):
        answers = path.judges[judge]
        clear = next((s for s in range(clarity_from, path.num_steps)
                      if answers.clarity[s] is not None and answers.clarity[s] > 0.5), None)
        if clear is None:  # never judged clear: no potential, P("no") = 1 (released code), decoded to the end
            p_no.append(1.0)
            stopped.append(path.num_steps)
            passes += path.num_steps
            continue
        potential = answers.potential[clear]
        if potential is None:
            raise ValueError(f"parm_pick: path {i} is clear at step {clear} but its potential was not recorded")
        p_no.append(answers.potential_no[clear])
        stopped.append(path.num_steps if potential > 0.5 else clear + 1)
        passes += stopped[-1]
        if potential > 0.5:
            survivors.append(i)
    if survivors:
        return _argmax([p.judges[judge].final for p in paths], survivors), passes
    fallback = min(range(len(paths)), key=lambda i: (p_no[i], i))
    passes += paths[fallback].num_steps - stopped[fallback]  # a pruned fallback winner is resumed to its last step
    return fallback, passes


def prune_pick(keep: Sequence[bool], scores: Sequence[float], step: int, num_steps: int) -> tuple[int, int]:
    """``(picked path, generator forward passes)``: paths with ``keep`` false stop after 0-based ``step``; the best
    ``scores`` among the kept ones, or over every path when none is kept (the pick then resumed to its last step)."""
    if len(keep) != len(scores) or not keep:
        raise ValueError(f"prune_pick: {len(keep)} keep flags for {len(scores)} scores")
    if not 0 <= step < num_steps:
        raise ValueError(f"prune_pick: step {step} outside [0, {num_steps})")
    kept = [i for i, k in enumerate(keep) if k]
    passes = num_steps * len(kept) + (step + 1) * (len(keep) - len(kept))
    if kept:
        return _argmax(scores, kept), passes
    pick = _argmax(scores, range(len(keep)))
    return pick, passes + num_steps - (step + 1)  # resumed to its last step


def records_to_json(records: Sequence[Sequence[StepRecord]]) -> list:
    """Per slot, per path: plain lists and dicts (``torch.save`` / ``torch.load(weights_only=True)``, JSON)."""
    return [[{"verdict": list(p.verdict), "judges": {k: vars(v) for k, v in p.judges.items()}} for p in slot]
            for slot in records]


def records_from_json(data: Sequence) -> list[list[StepRecord]]:
    return [[StepRecord([bool(v) for v in p["verdict"]], {k: JudgeSteps(**v) for k, v in p["judges"].items()})
             for p in slot] for slot in data]
