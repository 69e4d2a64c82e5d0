"""PARM search with real pruning (paper §6.1, reference §6, §13 bug 2, §17 "PARM").

The decision logic (clarity until clear, potential once clear, best-of-N' or the lowest-P("no") fallback) is
:class:`reward_models.parm.Parm`'s; this module drives the pipeline around it:

* N paths with per-candidate seeds decode in lockstep; after each step the predicted clean images of the paths
  PARM still waits on are decoded and handed to ``Parm.observe_step`` (decoded only for those paths);
* a path PARM prunes **leaves the batch at once** (``state.select``), so it costs no further generator forward
  passes. ``saved_forward_passes`` = sum over pruned paths of the passes of the steps after ``pruned_step``
  (``num_steps - 1 - pruned_step`` for Show-o; those steps' codes for Janus-Pro, whose steps are K raster rows and
  whose predicted image fills the rows not drawn yet);
* a pruned path is parked (:meth:`search.base.PathGroup.park`: its row split off with its generator); if every path
  is pruned, the fallback winner is resumed from where it stopped and decoded to the end (the same path as if it
  had never stopped), which costs the passes of its remaining steps, recorded in the trace.

With ``Parm(truncate=False)`` (released-code mode) nothing is pruned and every path is decoded to the end.
"""
from __future__ import annotations

from typing import Sequence

import torch

from common.generator import ImageGenerator
from reward_models.parm import Parm, ParmSelection, ParmState
from search.base import (Candidate, CostCounter, ParkedPath, PathGroup, Sampling, SearchResult, Slot, TraceEvent,
                         decode_images, record_cots)


class ParmSearch:
    """``search`` runs PARM over ``num_candidates`` paths of one slot.

    Args:
        parm: the PARM procedure (its judge holds the PARM weights); a ``ParmPlusPlus`` works too.
        num_candidates: N (paper: 20).
        batch_size: rows per forward pass (does not change any image).
    """

    name = "parm"

    def __init__(self, parm: Parm, num_candidates: int = 20, batch_size: int = 20) -> None:
        if num_candidates < 1:
            raise ValueError(f"num_candidates must be >= 1, got {num_candidates}")
        self.parm = parm
        self.num_candidates = num_candidates
        self.batch_size = batch_size

    @property
    def slots_per_call(self) -> int:
        """How many slots :meth:`search_many` decodes together: as many as fill ``batch_size`` rows (at least 1)."""
        return max(1, self.batch_size // self.num_candidates)

    def search(self, pipe: ImageGenerator, slot: Slot, sampling: Sampling) -> SearchResult:
        return self.search_many(pipe, [slot], sampling)[0]

    def search_many(self, pipe: ImageGenerator, slots: Sequence[Slot], sampling: Sampling) -> list[SearchResult]:
        """:meth:`search` for each of ``slots``, their paths decoded together in chunks of ``batch_size`` rows (one
        prompt per row). Each path keeps its own generator, each slot has its own PARM state and its images are judged
        in calls of their own, as :meth:`search` judges them, and a pruned path leaves the batch at once, so every
        slot's decisions, pick and cost are the slot-by-slot ones."""
        if not pipe.can_decode:
            raise ValueError("PARM search needs a generator that decodes images (a vq_model): the judge looks at them")
        if not slots:
            return []
        n, num_steps = self.num_candidates, pipe.num_steps(sampling)
        runs = [_SlotRun(slot, [Candidate(index=i, seed=slot.candidate_seed(i)) for i in range(n)],
                         self.parm.new_state(n)) for slot in slots]
        group = PathGroup(pipe, [r.slot.prompt for r in runs for _ in range(n)], list(range(len(runs) * n)),
                          [c.seed for r in runs for c in r.candidates], sampling, self.batch_size)
        for k, r in enumerate(runs):
            record_cots(r.candidates, {g - k * n: t for g, t in group.cots.items() if g // n == k})
        full = pipe.image_forward_passes(sampling, num_steps)
        while not group.done:
            step = group.step_index
            preds = group.step()
            pruned: list[int] = []
            for k, r in enumerate(runs):
                live = [g - k * n for g in group.live if g // n == k]
                if not live:  # every path of this slot pruned: it is decided (searched alone, it would stop here)
                    continue
                local = {i: preds[k * n + i] for i in live}
                for i in self._observe(pipe, r, local, step, num_steps, full, sampling):
                    pruned.append(k * n + i)
            if pruned:
                for g, path in group.park(pruned).items():
                    runs[g // n].parked[g % n] = path
        for g, passes in group.path_forward_passes().items():  # every path the slot had, pruned ones included
            runs[g // n].cost.generator_forward_passes += passes
        return [self._select(pipe, r, num_steps) for r in runs]

    def _observe(self, pipe: ImageGenerator, run: "_SlotRun", preds: dict[int, torch.Tensor], step: int,
                 num_steps: int, full: int, sampling: Sampling) -> list[int]:
        """One slot's PARM decisions after ``step`` (its live paths' predictions ``preds``); returns the paths it
        prunes now (the last step's predictions are the final images instead, pruned or not)."""
        n, state, cost = self.num_candidates, run.state, run.cost
        awaiting = state.awaiting_paths() if self.parm.judges_step(step, num_steps) else []
        images: list = [None] * n
        for i, image in zip(awaiting, decode_images(pipe, _stack(preds, awaiting), cost)):
            images[i] = image
        decision = self.parm.observe_step(state, [run.slot.prompt] * n, images, step, num_steps)
        cost.add_judge(decision.cost, calls=int(bool(decision.judged_paths)) + int(bool(decision.clear_paths)))
        run.trace.append(TraceEvent("observe", step, decision.judged_paths, {
            "clear": decision.clear_paths, "potential": decision.potential_paths,
            "no_potential": decision.no_potential_paths, "pruned": decision.pruned_paths}))
        if step == num_steps - 1:
            run.final = dict(preds)
            return []
        if not decision.pruned_paths:
            return []
        for i in decision.pruned_paths:
            run.candidates[i].stopped_step = step
        pruned = [i for i in sorted(preds) if i in set(decision.pruned_paths)]
        saved = full - pipe.image_forward_passes(sampling, step + 1)
        run.trace.append(TraceEvent("prune", step, decision.pruned_paths,
                                    {"saved_forward_passes": len(pruned) * saved}))
        return pruned

    def _select(self, pipe: ImageGenerator, run: "_SlotRun", num_steps: int) -> SearchResult:
        n, state, cost, candidates, final = self.num_candidates, run.state, run.cost, run.candidates, run.final
        prompts = [run.slot.prompt] * n
        if not state.finished:  # all paths pruned before the last step: every path is decided already
            raise RuntimeError("PARM state has undecided paths after decoding; this is a bug")
        for i, tokens in final.items():
            candidates[i].tokens = tokens.cpu()
        finished = [i for i in range(n) if i in final]
        final_images: list = [None] * n
        for i, image in zip(finished, decode_images(pipe, _stack(final, finished), cost)):
            final_images[i] = image
        selection = self.parm.select(state, prompts, final_images)
        if selection.candidates:
            cost.add_judge(selection.cost)
        self._record(candidates, state, selection)
        chosen = selection.index
        run.trace.append(TraceEvent("select", None, [chosen], {
            "rule": "fallback_min_p_no" if selection.used_fallback else "best_of_n_prime",
            "survivors": selection.candidates}))
        image = final_images[chosen]
        if selection.needs_completion:
            image, passes = self._complete(pipe, candidates[chosen], run.parked[chosen], cost)
            run.trace.append(TraceEvent("complete", None, [chosen], {"forward_passes": passes}))
        return SearchResult(slot=run.slot, strategy=self.name, chosen=chosen, candidates=candidates, trace=run.trace,
                            cost=cost, num_steps=num_steps, image=image)

    @staticmethod
    def _record(candidates: list[Candidate], state: ParmState, selection: ParmSelection) -> None:
        for c, record in zip(candidates, state.paths):
            c.info.update(clear_step=record.clear_step, potential=record.potential, p_no=record.p_no,
                          clarity_checks=record.clarity_checks, pruned_step=record.pruned_step)
            score = float(selection.scores[c.index])
            c.score = None if score != score else score  # NaN: not a best-of-N' candidate

    @staticmethod
    def _complete(pipe: ImageGenerator, cand: Candidate, path: ParkedPath, cost: CostCounter):
        """Resume a pruned fallback winner where it stopped (its own row and generator: the same path -- and with a
        semantic CoT the same plan -- as if it had never stopped) to the last step; returns (image, forward passes
        spent)."""
        tokens, passes = path.finish()
        cand.tokens = tokens.cpu()
        cost.generator_forward_passes += passes
        return decode_images(pipe, cand.tokens[None], cost)[0], passes


def saved_forward_passes(result: SearchResult) -> int:
    """Generator forward passes the pruning saved, from the trace alone (``num_steps - 1 - step`` per pruned path)."""
    return sum(e.detail["saved_forward_passes"] for e in result.trace if e.action == "prune")


def _stack(tokens: dict[int, torch.Tensor], ids: list[int]) -> torch.Tensor:
    if not ids:
        return torch.empty(0, 0, dtype=torch.long)
    return torch.stack([tokens[i] for i in ids])


class _SlotRun:
    """One slot's side of :meth:`ParmSearch.search_many`: its candidates, PARM state, cost, trace, final predictions
    and parked (pruned) paths."""

    def __init__(self, slot: Slot, candidates: list[Candidate], state: ParmState) -> None:
        self.slot, self.candidates, self.state = slot, candidates, state
        self.cost, self.trace = CostCounter(), []
        self.final: dict[int, torch.Tensor] = {}
        self.parked: dict[int, ParkedPath] = {}
