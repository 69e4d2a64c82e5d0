"""Step-level search with a process judge: score the live paths' predicted images, keep the best, branch (paper §5).

The paper's PRM search is "step-level best-of-N: the most confident candidate is kept and decoding continues from
it"; the branching scheme is not specified (reference §5, §16). Here it is a beam search with three knobs:

* ``schedule``: the 0-based steps after which the live paths are scored (default: every step but the last);
* ``keep``: how many paths survive each scored step (one number, or one per scheduled step);
* ``expansion``: children per kept path. The first child *is* the kept path (same row, same generator); the others
  repeat its row with fresh generators (seeded from new candidate ids), so siblings diverge from the next step on.
  ``expansion=1`` only prunes; the pool policy :class:`search.pool.PrmBeamPolicy` replays exactly that case.

Reference §17's reading (N continuations of the one kept state at every step) is ``keep=1, expansion=N``.
The final pick is the argmax of ``final_judge`` (an outcome judge) if given, else of the process judge at the last
step. Ties go to the lowest candidate index.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch

from common.generator import ImageGenerator
from reward_models.base import OutcomeJudge, ProcessJudge
from search.base import (Candidate, CostCounter, PathGroup, Sampling, SearchResult, Slot, TraceEvent, argmax_first,
                         decode_images, record_cots)


def keep_schedule(schedule: Sequence[int], keep: int | Sequence[int]) -> dict[int, int]:
    """step -> number of paths kept after it; ``keep`` is one number or one per scheduled step."""
    counts = [int(keep)] * len(schedule) if isinstance(keep, int) else [int(k) for k in keep]
    if len(counts) != len(schedule):
        raise ValueError(f"keep has {len(counts)} entries for {len(schedule)} scheduled steps {list(schedule)}")
    if any(k < 1 for k in counts):
        raise ValueError(f"keep counts must be >= 1, got {counts}")
    return dict(zip(schedule, counts))


def rank_paths(ids: Sequence[int], scores: dict[int, float], k: int) -> list[int]:
    """The ``k`` best of ``ids`` by score, ties to the lower id (stable)."""
    return sorted(ids, key=lambda i: (-scores[i], i))[:k]


class StepLevelSearch:
    """Beam search over a generator's steps (Show-o's decoding steps, Janus-Pro's K-row steps) with a
    :class:`~reward_models.base.ProcessJudge`.

    Args:
        judge: scores predicted images of a step (PRM zero-shot / fine-tuned).
        num_paths: paths decoded from the start.
        keep: paths kept after each scheduled step (int or one per step).
        expansion: children per kept path (1 = prune only).
        schedule: 0-based steps to score after; ``None`` = every step except the last.
        final_judge: outcome judge for the final pick (``None``: the process judge at the last step).
        batch_size: rows per forward pass at the start (children stay in their parent's chunk).
    """

    name = "step_level"

    def __init__(self, judge: ProcessJudge, num_paths: int = 4, keep: int | Sequence[int] = 1, expansion: int = 4,
                 schedule: Optional[Sequence[int]] = None, final_judge: Optional[OutcomeJudge] = None,
                 batch_size: int = 20) -> None:
        if num_paths < 1 or expansion < 1:
            raise ValueError(f"num_paths and expansion must be >= 1, got {num_paths}, {expansion}")
        self.judge = judge
        self.num_paths = num_paths
        self.keep = keep if isinstance(keep, int) else list(keep)
        self.expansion = expansion
        self.schedule = None if schedule is None else [int(s) for s in schedule]
        self.final_judge = final_judge
        self.batch_size = batch_size

    def steps(self, num_steps: int) -> dict[int, int]:
        schedule = list(range(num_steps - 1)) if self.schedule is None else self.schedule
        bad = [s for s in schedule if not 0 <= s < num_steps - 1]
        if bad or sorted(set(schedule)) != list(schedule):
            raise ValueError(f"schedule must be increasing steps in [0, {num_steps - 1}), got {schedule}")
        return keep_schedule(schedule, self.keep)

    def search(self, pipe: ImageGenerator, slot: Slot, sampling: Sampling) -> SearchResult:
        if not pipe.can_decode:
            raise ValueError("step-level search needs a generator that decodes images (a vq_model): the judge looks "
                             "at them")
        num_steps = pipe.num_steps(sampling)
        keep_after = self.steps(num_steps)
        candidates = [Candidate(index=i, seed=slot.candidate_seed(i)) for i in range(self.num_paths)]
        cost, trace = CostCounter(), []
        group = PathGroup(pipe, slot.prompt, [c.index for c in candidates], [c.seed for c in candidates], sampling,
                          self.batch_size)
        while not group.done:
            step = group.step_index
            preds = group.step()
            if step not in keep_after:
                continue
            live = group.live
            images = decode_images(pipe, torch.stack([preds[i] for i in live]), cost)
            out = self.judge.score_steps([slot.prompt] * len(live), images, step, num_steps)
            cost.add_judge(out.cost)
            scores = dict(zip(live, out.scores.tolist()))
            for i in live:
                candidates[i].step_scores[step] = scores[i]
            kept = rank_paths(live, scores, keep_after[step])
            for i in live:
                if i not in kept:
                    candidates[i].stopped_step = step
            plan = self._plan(kept, step, slot, candidates)
            group.branch(plan)
            trace.append(TraceEvent("score", step, live, {"scores": [scores[i] for i in live]}))
            trace.append(TraceEvent("keep", step, kept, {"stopped": [i for i in live if i not in kept]}))
            if self.expansion > 1:
                trace.append(TraceEvent("branch", step, [c for _, c, _ in plan], {"parents": [p for p, _, _ in plan]}))
        cost.generator_forward_passes = group.forward_passes
        record_cots(candidates, group.cots)
        final = group.final_tokens()
        finished = sorted(final)
        for i in finished:
            candidates[i].tokens = final[i].cpu()
        images = decode_images(pipe, torch.stack([final[i] for i in finished]), cost)
        if self.final_judge is not None:
            out = self.final_judge.score([slot.prompt] * len(finished), images)
        else:
            out = self.judge.score_steps([slot.prompt] * len(finished), images, num_steps - 1, num_steps)
        cost.add_judge(out.cost)
        for i, s in zip(finished, out.scores.tolist()):
            candidates[i].score = float(s)
        k = argmax_first([candidates[i].score for i in finished])
        chosen = finished[k]
        trace.append(TraceEvent("select", None, [chosen], {"finished": finished,
                                                           "rule": "process" if self.final_judge is None else "final_judge"}))
        return SearchResult(slot=slot, strategy=self.name, chosen=chosen, candidates=candidates, trace=trace, cost=cost,
                            num_steps=num_steps, image=images[k])

    def _plan(self, kept: list[int], step: int, slot: Slot, candidates: list[Candidate]):
        """(parent, child, seed) triples: each kept path continues, plus ``expansion - 1`` fresh siblings."""
        plan = []
        for parent in kept:
            plan.append((parent, parent, None))
            for _ in range(self.expansion - 1):
                child = Candidate(index=len(candidates), seed=slot.candidate_seed(len(candidates)), parent=parent,
                                  branch_step=step)
                candidates.append(child)
                plan.append((parent, child.index, child.seed))
        return plan
