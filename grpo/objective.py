"""The BiCoT-GRPO objective as small pure functions (t2i_r1.md §6.1 step 5, §6.2, §15.2.7).

Per token ``t`` of sample ``i`` (text and image alike), with log-probs ``logp`` of the current policy (with grad),
``ref`` of the frozen reference and ``old`` of the policy that sampled the rollout:

    ratio_t = exp(logp_t - old_t)                       old = stopgrad(logp) on-policy: value 1, gradient of logp
    surr_t  = ratio_t * A_i                             official (no clipping)
    surr_t  = min(ratio_t A_i, clip(ratio_t, 1 - eps_low, 1 + eps_high) A_i)     PPO clipping, for reused rollouts
    kl_t    = exp(ref_t - logp_t) - (ref_t - logp_t) - 1                          k3 estimator, >= 0
    loss_t  = -(surr_t - beta * kl_t)

then one scalar through a :mod:`grpo.normalization` choice (official: the token mean over ``[text ‖ image]``).
The official run takes one gradient step per rollout, so ``ratio == 1`` in value and clipping never acts; clipping
matters only when a rollout is reused for several updates with stored ``old`` log-probs.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch

from grpo.normalization import LossNormalization, TokenMean, check_token_inputs

__all__ = ["GRPOLoss", "GRPOLossOutput", "importance_ratio", "k3_kl", "policy_gradient_term"]

Tokens = Mapping[str, torch.Tensor]


def k3_kl(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimate of KL(policy || reference): ``exp(ref - logp) - (ref - logp) - 1`` (same shape)."""
    delta = ref_logp - logp
    return torch.exp(delta) - delta - 1


def importance_ratio(logp: torch.Tensor, old_logp: torch.Tensor | None = None) -> torch.Tensor:
    """``exp(logp - old)``; ``old=None`` is the on-policy ratio ``exp(logp - stopgrad(logp))`` (value 1)."""
    old = logp.detach() if old_logp is None else old_logp.detach()
    return torch.exp(logp - old)


def policy_gradient_term(
    logp: torch.Tensor,
    advantages: torch.Tensor,
    old_logp: torch.Tensor | None = None,
    clip: tuple[float, float] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Surrogate ``[B, L]`` to maximise, and a ``[B, L]`` bool of tokens where the clipped branch is the minimum.

    ``advantages`` ``[B]`` is broadcast to every token of its row. ``clip=(eps_low, eps_high)`` enables PPO
    clipping of the ratio to ``[1 - eps_low, 1 + eps_high]``; ``None`` is the official unclipped term.
    """
    if advantages.dim() != 1 or advantages.shape[0] != logp.shape[0]:
        raise ValueError(f"advantages must be [B]={logp.shape[0]}, got shape {tuple(advantages.shape)}")
    ratio = importance_ratio(logp, old_logp)
    adv = advantages.detach().to(logp.dtype)[:, None]  # [B, 1]
    unclipped = ratio * adv
    if clip is None:
        return unclipped, torch.zeros_like(unclipped, dtype=torch.bool)
    low, high = clip
    clipped = ratio.clamp(1.0 - low, 1.0 + high) * adv
    return torch.minimum(unclipped, clipped), clipped < unclipped


@dataclass
class GRPOLossOutput:
    """``loss``: scalar with grad; ``per_token``: modality -> ``[B, L_k]`` losses; ``metrics``: floats to log."""

    loss: torch.Tensor
    per_token: dict[str, torch.Tensor]
    kl: dict[str, torch.Tensor]
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class GRPOLoss:
    """The BiCoT-GRPO loss (module docstring); defaults are the official trainer's (t2i_r1.md §7).

    Args:
        beta: KL coefficient (official 0.01); 0 trains without a reference.
        clip_eps: PPO clip range ``eps_low`` (``None`` = official, no clipping).
        clip_eps_high: upper range; ``None`` = ``clip_eps`` (symmetric).
        normalization: a :mod:`grpo.normalization` object (official :class:`~grpo.normalization.TokenMean`).
    """

    beta: float = 0.01
    clip_eps: float | None = None
    clip_eps_high: float | None = None
    normalization: LossNormalization = field(default_factory=TokenMean)

    def __post_init__(self) -> None:
        if self.beta < 0:
            raise ValueError(f"GRPOLoss.beta must be >= 0, got {self.beta}")
        if self.clip_eps is not None and not 0 < self.clip_eps < 1:
            raise ValueError(f"GRPOLoss.clip_eps must be in (0, 1) or null, got {self.clip_eps}")
        if self.clip_eps_high is not None and (self.clip_eps is None or self.clip_eps_high <= 0):
            raise ValueError("GRPOLoss.clip_eps_high needs clip_eps and must be > 0")

    @property
    def clip(self) -> tuple[float, float] | None:
        if self.clip_eps is None:
            return None
        return self.clip_eps, self.clip_eps if self.clip_eps_high is None else self.clip_eps_high

    def __call__(
        self,
        logps: Tokens,
        masks: Tokens,
        advantages: torch.Tensor,
        group_size: int,
        *,
        ref_logps: Tokens | None = None,
        old_logps: Tokens | None = None,
    ) -> GRPOLossOutput:
        """Loss of one micro-batch; every mapping is modality -> ``[B, L_k]``, ``advantages`` is ``[B]``."""
        check_token_inputs(logps, masks)
        for name, other in (("ref_logps", ref_logps), ("old_logps", old_logps)):
            if other is not None and set(other) != set(logps):
                raise ValueError(f"{name} has modalities {sorted(other)}, logps has {sorted(logps)}")
        if ref_logps is None and self.beta > 0:
            raise ValueError(f"beta={self.beta} needs reference log-probs; set beta: 0 to train without a reference")
        per_token, kls, clipped = {}, {}, {}
        for name, logp in logps.items():
            surrogate, clipped[name] = policy_gradient_term(
                logp, advantages, None if old_logps is None else old_logps[name], self.clip
            )
            kls[name] = torch.zeros_like(logp) if ref_logps is None else k3_kl(logp, ref_logps[name].detach())
            per_token[name] = -(surrogate - self.beta * kls[name])
        loss = self.normalization(per_token, masks, group_size)
        return GRPOLossOutput(
            loss=loss,
            per_token=per_token,
            kl={k: v.detach() for k, v in kls.items()},
            metrics=self._metrics(loss, kls, clipped, masks, group_size),
        )

    @staticmethod
    def _metrics(loss, kls: Tokens, clipped: Tokens, masks: Tokens, group_size: int) -> dict[str, float]:
        """``loss``, ``kl`` (official: token mean over all modalities), ``kl/<modality>``, ``clip_fraction``."""
        mean = TokenMean()
        with torch.no_grad():
            detached = {k: v.detach() for k, v in kls.items()}
            metrics = {"loss": float(loss.detach()), "kl": float(mean(detached, masks, group_size))}
            for name in kls:
                metrics[f"kl/{name}"] = float(mean({name: detached[name]}, {name: masks[name]}, group_size))
            as_float = {k: v.float() for k, v in clipped.items()}
            metrics["clip_fraction"] = float(mean(as_float, masks, group_size))
        return metrics
