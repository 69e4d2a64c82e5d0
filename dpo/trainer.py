"""The per-batch objective of the DPO recipe (``scripts/train_dpo.py``).

The loop itself lives in the recipe (torchtune style); checkpoints, metrics and run directories come from
:mod:`showo.recipe_utils`, shared with the other recipes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from showo.logprob import MaskingConfig
from showo.loss import IGNORE_INDEX
from showo.tokens import TokenLayout

from .batch import PairBatch, mask_pairs, pair_logprobs
from .guidance import MarginPairWeights, OnlineRewardGuidance
from .loss import PreferenceLoss, dpo_loss
from .reference import ReferencePolicy

__all__ = ["DPOObjective"]


@dataclass
class DPOObjective:
    """``loss = mean_i(w_i * dpo_i) + chosen_nll_weight * nll_chosen + guidance`` for one micro-batch, and its metrics
    (per-batch means, detached).

    ``reference=None`` is the reference-free objective and must come with ``reference_free=True``.
    ``chosen_nll_weight`` > 0 adds the chosen images' negative log-likelihood per scored token (a likelihood anchor, as
    in RPO, Pang et al. 2024): 0 (default) is the paper's plain DPO.
    """

    layout: TokenLayout
    masking: MaskingConfig
    seed: int
    loss_fn: PreferenceLoss
    reference: Optional[ReferencePolicy]
    reference_free: bool = False
    pair_weights: Optional[MarginPairWeights] = None
    guidance: Optional[OnlineRewardGuidance] = None
    tokenizer: object = None
    vq_model: Optional[nn.Module] = None
    chosen_nll_weight: float = 0.0

    def __post_init__(self) -> None:
        if not self.chosen_nll_weight >= 0:
            raise ValueError(f"dpo.chosen_nll_weight must be >= 0, got {self.chosen_nll_weight}")
        if self.reference is None and not self.reference_free:
            raise ValueError("dpo.reference is none: set dpo.reference_free=true to train without a reference on purpose")

    def __call__(self, model, batch: PairBatch, step: int, *, generation_model=None,
                 device=None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        masked = mask_pairs(batch, self.layout, self.masking, self.seed)
        pc, pr = pair_logprobs(model, masked, self.layout, device)
        rc = rr = None
        if self.reference is not None:
            rc, rr = (t.to(pc.device) for t in self.reference.logprobs(batch, masked))
        out = dpo_loss(pc, pr, rc, rr, self.loss_fn, reference_free=self.reference_free)
        weights = torch.ones_like(out.losses) if self.pair_weights is None else self.pair_weights(batch).to(pc.device)
        dpo = (weights * out.losses).mean()
        loss = dpo
        metrics = {
            "train/dpo_loss": dpo.detach(), "rewards/chosen": out.chosen_rewards.mean(),
            "rewards/rejected": out.rejected_rewards.mean(), "rewards/margin": out.margins.mean(),
            "rewards/accuracy": out.accuracy.mean(), "logps/chosen": pc.detach().mean(), "logps/rejected": pr.detach().mean(),
        }
        if self.chosen_nll_weight > 0:
            nll = -(pc / _scored_tokens(masked, self.layout, len(batch)).to(pc.device)).mean()
            loss = loss + self.chosen_nll_weight * nll
            metrics["train/chosen_nll"] = nll.detach()
        if self.guidance is not None:
            codes, rewards = self.guidance.sample(generation_model or model, self.layout, self.tokenizer, self.vq_model,
                                                  batch, step, self.seed)
            term = self.guidance.term(model, codes, rewards, batch, self.layout, step, self.seed, device)
            loss = loss + term
            metrics["guidance/reward"] = rewards.mean().to(pc.device)
            metrics["guidance/term"] = term.detach()
        metrics["train/loss"] = loss.detach()
        return loss, metrics


def _scored_tokens(masked, layout: TokenLayout, num_pairs: int) -> torch.Tensor:
    """Scored (masked) image tokens per chosen image, averaged over its draws like ``image_logprob`` ([B], >= 1)."""
    labels = masked.labels[: num_pairs * masked.num_draws, layout.text_len:]
    return (labels != IGNORE_INDEX).sum(-1).view(num_pairs, masked.num_draws).float().mean(-1).clamp(min=1.0)
