"""Reward guidance for DPO that actually changes training (imagegen_cot.md §9, bug #7 / issue #22).

The released "PARM-guided DPO" adds ``0.1 * -log p_judge`` computed from Python floats of a no-grad generation: the
term has no gradient path to Show-o, so the released guided model is plain DPO. Two objectives here do have one:

* :class:`OnlineRewardGuidance` (the paper's "online preference guidance", §9): every step the current policy
  samples one image per prompt of the batch (no grad), the judge scores it, and the policy's masked-token
  log-likelihood of its own sample is weighted by the advantage ``r - baseline``::

      L_guide = -coef * mean_i[(r_i - baseline) * ell_theta(x_i | c_i)]

  This is a REINFORCE-style reward-weighted likelihood with ``ell`` (the Monte-Carlo likelihood estimate of
  :mod:`showo.logprob`) standing in for ``log pi``: samples the judge likes above the baseline become more likely,
  the others less. The baseline is a constant (P("yes") = 0.5 by default) so the update of an image does not depend
  on which other images share its batch. The online images use classifier-free guidance by default
  (``guidance_scale=1.75``, as at evaluation; the released code generated them without CFG, bug #17:
  ``guidance_scale=0`` reproduces that).
* :class:`MarginPairWeights`: each pair's DPO loss is weighted by the judge's score margin
  ``clamp(margin / scale, min_weight, 1)``, so confidently-ranked pairs pull harder than near-ties.

Both are selected by ``configs/dpo/*.yaml`` (``guidance:`` / ``pair_weights:``); ``dpo=sigmoid`` is the ablation.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from common.seeding import seeded_generator
from showo.logprob import MaskingConfig, draw_masked_batch, image_logprob
from showo.pipeline import ShowoPipeline
from showo.tokens import TokenLayout

from .batch import PairBatch

__all__ = ["MarginPairWeights", "OnlineRewardGuidance"]


@dataclass(frozen=True)
class MarginPairWeights:
    """Per-pair weights [B] from the judge margins ``chosen_score - rejected_score``."""

    scale: float = 0.5
    min_weight: float = 0.1

    def __post_init__(self) -> None:
        if not self.scale > 0:
            raise ValueError(f"pair_weights.scale must be > 0, got {self.scale}")
        if not 0.0 <= self.min_weight <= 1.0:
            raise ValueError(f"pair_weights.min_weight must be in [0, 1], got {self.min_weight}")

    def __call__(self, batch: PairBatch) -> torch.Tensor:
        if bool(torch.isnan(batch.margins).any()):
            missing = [i for i, m in zip(batch.indices, batch.margins.tolist()) if m != m]
            raise ValueError(f"pair_weights need chosen_score and rejected_score; pairs {missing[:5]} have none")
        return (batch.margins / self.scale).clamp(self.min_weight, 1.0)


class OnlineRewardGuidance:
    """``-coef * mean[(r - baseline) * ell_theta(own sample)]`` with ``r`` from any ``OutcomeJudge``.

    Args:
        judge: an ``OutcomeJudge`` (``score(prompts, images) -> JudgeOutput``); its ``scores`` are the rewards.
        coef: weight of the term (released ``reward_coef`` 0.1).
        baseline: subtracted from the rewards (constant: keeps the update batch-size independent).
        sampling: the pipeline's sampling settings for the online samples (``model.sampling``: the policy's own);
            ``None`` = the pipeline's defaults.
        scheduler: the sampler (``model.scheduler``); ``None`` = Show-o's official one.
        masking: how ``ell`` of the own samples is drawn (default: no prompt dropout, one draw).
    """

    def __init__(self, judge, coef: float = 0.1, baseline: float = 0.5, sampling: Optional[dict] = None,
                 scheduler=None, masking: Optional[dict] = None) -> None:
        if coef <= 0:
            raise ValueError(f"guidance.coef must be > 0 (use dpo=sigmoid for no guidance), got {coef}")
        self.judge = judge
        self.coef = coef
        self.baseline = baseline
        self.sampling = dict(sampling or {})
        ShowoPipeline.check_sampling(self.sampling, "dpo.guidance.sampling")
        self.scheduler = scheduler
        self.masking = MaskingConfig(**({"cond_dropout_prob": 0.0} | dict(masking or {})))

    @torch.no_grad()
    def sample(self, generator_model, layout: TokenLayout, tokenizer, vq_model, batch: PairBatch, step: int,
               seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """One image per pair prompt from the current policy -> (codes [B, N], rewards [B]). Seeds: (seed, step, pair)."""
        pipe = ShowoPipeline(generator_model, layout, tokenizer=tokenizer, vq_model=vq_model, scheduler=self.scheduler)
        gens = [seeded_generator(seed, "guidance-sample", step, i, device=generator_model.device) for i in batch.indices]
        out = pipe(batch.prompts, generator=gens, output_type="pil", **self.sampling)
        judged = self.judge.score(batch.prompts, out.images)
        return out.tokens.cpu(), judged.scores.float().cpu()

    def term(self, model, codes: torch.Tensor, rewards: torch.Tensor, batch: PairBatch, layout: TokenLayout,
             step: int, seed: int, device=None) -> torch.Tensor:
        """The differentiable term (scalar) for given own samples ``codes`` [B, N] and ``rewards`` [B]."""
        gens = [seeded_generator(seed, "guidance-mask", step, i) for i in batch.indices]
        masked = draw_masked_batch(batch.prompt_ids, codes, layout, gens, self.masking)
        ell = image_logprob(model, masked.to(device) if device is not None else masked, layout)  # [B]
        advantage = (rewards - self.baseline).to(ell.device)
        return -self.coef * (advantage * ell).mean()
