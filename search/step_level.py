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

    @property
    def slots_per_call(self) -> int:
        """How many slots :meth:`search_many` decodes together: as many as fill ``batch_size`` rows with their
        widest beam (at least 1)."""
        keep = self.keep if isinstance(self.keep, int) else max(self.keep, default=1)
        return max(1, self.batch_size // max(self.num_paths, keep * self.expansion))

    def search(self, pipe: ImageGenerator, slot: Slot, sampling: Sampling) -> SearchResult:
        return self.search_many(pipe, [slot], sampling)[0]

    def search_many(self, pipe: ImageGenerator, slots: Sequence[Slot], sampling: Sampling) -> list[SearchResult]:
        """:meth:`search` for each of ``slots``, their paths decoded together in chunks of ``batch_size`` rows (one
        prompt per row; branched children stay in their parent's chunk). Each path keeps its own generator and each
        slot's images are judged in a call of their own, as :meth:`search` judges them, so every slot's beam, scores
        and pick are the slot-by-slot ones; a slot's generator passes are those of its own rows."""
        if not pipe.can_decode:
            raise ValueError("step-level search needs a generator that decodes images (a vq_model): the judge looks "
                             "at them")
        if not slots:
            return []
        num_steps = pipe.num_steps(sampling)
        keep_after = self.steps(num_steps)
        beams = [_Beam(slot, [Candidate(index=i, seed=slot.candidate_seed(i)) for i in range(self.num_paths)])
                 for slot in slots]
        owner: dict[int, tuple[_Beam, int]] = {}  # path id in the group -> (its slot's beam, its candidate index)
        for beam in beams:
            for c in beam.candidates:
                owner[len(owner)] = (beam, c.index)
        group = PathGroup(pipe, [owner[g][0].slot.prompt for g in owner], list(owner),
                          [owner[g][0].candidates[owner[g][1]].seed for g in owner], sampling, self.batch_size)
        while not group.done:
            step = group.step_index
            preds = group.step()
            if step not in keep_after:
                continue
            plan = []
            for beam in beams:
                live = sorted((g for g in group.live if owner[g][0] is beam), key=lambda g: owner[g][1])
                plan += self._score_and_keep(pipe, beam, live, preds, step, num_steps, keep_after[step], owner)
            group.branch(plan)
        for g, passes in group.path_forward_passes().items():  # every path the slot had, stopped ones included
            owner[g][0].cost.generator_forward_passes += passes
        final = group.final_tokens()
        return [self._select(pipe, beam, {owner[g][1]: final[g] for g in final if owner[g][0] is beam},
                             {owner[g][1]: t for g, t in group.cots.items() if owner[g][0] is beam}, num_steps)
                for beam in beams]

    def _score_and_keep(self, pipe: ImageGenerator, beam: "_Beam", live: list[int], preds: dict[int, torch.Tensor],
                        step: int, num_steps: int, keep: int,
                        owner: dict[int, tuple["_Beam", int]]) -> list[tuple[int, int, Optional[int]]]:
        """Score one slot's live paths (group ids ``live``) at ``step``, keep its best, and return its branch plan in
        group ids (a new child gets the next group id in ``owner``)."""
        ids = [owner[g][1] for g in live]
        images = decode_images(pipe, torch.stack([preds[g] for g in live]), beam.cost)
        out = self.judge.score_steps([beam.slot.prompt] * len(ids), images, step, num_steps)
        beam.cost.add_judge(out.cost)
        scores = dict(zip(ids, out.scores.tolist()))
        for i in ids:
            beam.candidates[i].step_scores[step] = scores[i]
        kept = rank_paths(ids, scores, keep)
        for i in ids:
            if i not in kept:
                beam.candidates[i].stopped_step = step
        plan = self._plan(kept, step, beam.slot, beam.candidates)
        beam.trace.append(TraceEvent("score", step, ids, {"scores": [scores[i] for i in ids]}))
        beam.trace.append(TraceEvent("keep", step, kept, {"stopped": [i for i in ids if i not in kept]}))
        if self.expansion > 1:
            beam.trace.append(TraceEvent("branch", step, [c for _, c, _ in plan], {"parents": [p for p, _, _ in plan]}))
        group_id = dict(zip(ids, live))
        out_plan = []
        for parent, child, seed in plan:
            if child == parent:
                out_plan.append((group_id[parent], group_id[parent], None))
            else:
                g = len(owner)
                owner[g] = (beam, child)
                out_plan.append((group_id[parent], g, seed))
        return out_plan

    def _select(self, pipe: ImageGenerator, beam: "_Beam", final: dict[int, torch.Tensor], cots: dict[int, str],
                num_steps: int) -> SearchResult:
        candidates, cost, trace, slot = beam.candidates, beam.cost, beam.trace, beam.slot
        record_cots(candidates, cots)
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


class _Beam:
    """One slot's side of :meth:`StepLevelSearch.search_many`: its candidates (children appended as they branch),
    cost and trace."""

    def __init__(self, slot: Slot, candidates: list[Candidate]) -> None:
        self.slot, self.candidates = slot, candidates
        self.cost, self.trace = CostCounter(), []
