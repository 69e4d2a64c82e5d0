"""Best-of-N with any outcome judge (paper §4.1, reference §4.3, §17 "ORM best-of-N").

N candidate paths with independent per-candidate seeds (the scheduler's temperature restarts for each generation:
the released code's temperature-0-after-the-first-candidate bug is not reproduced), every final image scored by the
judge, the argmax kept (ties: the lowest candidate index). Any generator (:class:`common.generator.ImageGenerator`);
with Janus-Pro's semantic CoT every candidate writes its own plan from its own generator (T2I-R1's one image per CoT).
"""
from __future__ import annotations

from typing import Optional

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

    def search(self, pipe: ImageGenerator, slot: Slot, sampling: Sampling) -> SearchResult:
        ids = list(range(self.num_candidates))
        candidates = [Candidate(index=i, seed=slot.candidate_seed(i)) for i in ids]
        cost = CostCounter()
        group = PathGroup(pipe, slot.prompt, ids, [c.seed for c in candidates], sampling, self.batch_size)
        while not group.done:
            group.step()
        final = group.final_tokens()
        for c in candidates:
            c.tokens = final[c.index].cpu()
        record_cots(candidates, group.cots)
        cost.generator_forward_passes = group.forward_passes
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

