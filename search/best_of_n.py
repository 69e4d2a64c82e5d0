"""Best-of-N with any outcome judge (paper §4.1, reference §4.3, §17 "ORM best-of-N").

N candidate paths with independent per-candidate seeds (the scheduler's temperature restarts for each generation:
the released code's temperature-0-after-the-first-candidate bug is not reproduced), every final image scored by the
judge, the argmax kept (ties: the lowest candidate index). Any generator (:class:`common.generator.ImageGenerator`);
with Janus-Pro's semantic CoT every candidate writes its own plan from its own generator (T2I-R1's one image per CoT).
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch

from reward_models.base import OutcomeJudge
from common.generator import ImageGenerator
from search.base import (Candidate, CostCounter, PathGroup, Sampling, SearchResult, Slot, TraceEvent, argmax_first,
                         decode_images, record_cots)


class BestOfN:
    """``search`` draws ``num_candidates`` full generations and keeps the judge's argmax.

    Args:
        judge: any :class:`~reward_models.base.OutcomeJudge` (ORM zero-shot / fine-tuned, CLIP score, ...); ``None``
            keeps candidate 0 (the baseline: with N = 1 this is plain generation).
        num_candidates: N (paper: 20).
        batch_size: rows per forward pass (does not change any image).
    """

    name = "best_of_n"

    def __init__(self, judge: Optional[OutcomeJudge] = None, num_candidates: int = 20, batch_size: int = 20) -> None:
        if num_candidates < 1:
            raise ValueError(f"num_candidates must be >= 1, got {num_candidates}")
        self.judge = judge
        self.num_candidates = num_candidates
        self.batch_size = batch_size

    @property
    def slots_per_call(self) -> int:
        """How many slots :meth:`search_many` decodes together: as many as fill ``batch_size`` rows (at least 1)."""
        return max(1, self.batch_size // self.num_candidates)

    def search(self, pipe: ImageGenerator, slot: Slot, sampling: Sampling) -> SearchResult:
        return self.search_many(pipe, [slot], sampling)[0]

    def search_many(self, pipe: ImageGenerator, slots: Sequence[Slot], sampling: Sampling) -> list[SearchResult]:
        """:meth:`search` for each of ``slots``, their candidates decoded together in chunks of ``batch_size`` rows
        (one prompt per row). Each candidate keeps its own generator, so the images are the slot-by-slot ones; each
        slot's images are judged in a call of their own, as :meth:`search` judges them; a slot's cost is its own
        candidates' (:meth:`search.base.PathGroup.path_forward_passes`)."""
        if not slots:
            return []
        n = self.num_candidates
        candidates = [[Candidate(index=i, seed=slot.candidate_seed(i)) for i in range(n)] for slot in slots]
        group = PathGroup(pipe, [slot.prompt for slot in slots for _ in range(n)], list(range(len(slots) * n)),
                          [c.seed for cands in candidates for c in cands], sampling, self.batch_size)
        while not group.done:
            group.step()
        final, passes = group.final_tokens(), group.path_forward_passes()
        return [self._select(pipe, slot, sampling, cands, {c.index: final[k * n + c.index] for c in cands},
                             {c.index: group.cots[k * n + c.index] for c in cands if k * n + c.index in group.cots},
                             sum(passes[k * n + c.index] for c in cands))
                for k, (slot, cands) in enumerate(zip(slots, candidates))]

    def _select(self, pipe: ImageGenerator, slot: Slot, sampling: Sampling, candidates: list[Candidate],
                final: dict[int, torch.Tensor], cots: dict[int, str], passes: int) -> SearchResult:
        ids = [c.index for c in candidates]
        cost = CostCounter()
        for c in candidates:
            c.tokens = final[c.index].cpu()
        record_cots(candidates, cots)
        cost.generator_forward_passes = passes
        trace: list[TraceEvent] = []
        images = decode_images(pipe, torch.stack([c.tokens for c in candidates]), cost) if pipe.can_decode else None
        chosen = 0
        if self.judge is not None:
            if images is None:
                raise ValueError("best-of-N with a judge needs a generator that can decode images (a vq_model)")
            out = self.judge.score([slot.prompt] * len(candidates), images)
            cost.add_judge(out.cost)
            for c, s in zip(candidates, out.scores.tolist()):
                c.score = float(s)
            chosen = argmax_first([c.score for c in candidates])
            trace.append(TraceEvent("score", None, ids, {"scores": [c.score for c in candidates]}))
        trace.append(TraceEvent("select", None, [chosen], {"rule": "argmax" if self.judge is not None else "first"}))
        return SearchResult(slot=slot, strategy=self.name, chosen=chosen, candidates=candidates, trace=trace, cost=cost,
                            num_steps=pipe.num_steps(sampling), image=None if images is None else images[chosen])

