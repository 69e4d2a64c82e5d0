"""DPO losses as small pure functions: log-ratios -> preference logit -> loss (imagegen_cot.md §8.3; TRL's factoring).

With ``ell`` the (Monte-Carlo) image log-likelihood of :mod:`showo.logprob`::

    h = (ell_pi(chosen) - ell_pi(rejected)) - (ell_ref(chosen) - ell_ref(rejected))

* sigmoid (DPO, Rafailov et al. 2023; the paper's loss, beta = 0.1): ``-log sigma(beta h)``;
* label-smoothed / conservative DPO (cDPO, Mitchell 2023): ``-(1-eps) log sigma(beta h) - eps log sigma(-beta h)``;
* IPO (Azar et al. 2023): ``(h - 1/(2 beta))^2``. TRL's IPO averages log-probs over tokens; here ``ell`` is a sum
  over a random number of masked tokens, so ``h`` is used as is (documented in docs/dpo.md).

Implied rewards (TRL): ``beta * (ell_pi - ell_ref)`` per image, detached; accuracy = chosen reward > rejected reward.
A loss is a Hydra-selectable object (``configs/dpo/*.yaml``: ``_target_: dpo.loss.SigmoidLoss``), not a string.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Protocol

import torch
import torch.nn.functional as F

__all__ = ["DPOOutput", "IPOLoss", "PreferenceLoss", "SigmoidLoss", "dpo_loss", "preference_logits"]


def _check_beta(beta: float, name: str) -> None:
    if not beta > 0:
        raise ValueError(
            f"{name}: beta must be > 0, got {beta}. beta = 0 makes the loss constant (no gradient); a reference-free "
            "objective is chosen explicitly with reference: none, not through beta = 0"
        )


class PreferenceLoss(Protocol):
    beta: float

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        """Preference logits ``h`` [B] -> per-pair losses [B]."""
        ...


@dataclass(frozen=True)
class SigmoidLoss:
    """``-(1-eps) log sigma(beta h) - eps log sigma(-beta h)`` (eps = ``label_smoothing``; 0 = plain DPO)."""

    beta: float = 0.1
    label_smoothing: float = 0.0

    def __post_init__(self) -> None:
        _check_beta(self.beta, "SigmoidLoss")
        if not 0.0 <= self.label_smoothing < 0.5:
            raise ValueError(f"SigmoidLoss: label_smoothing must be in [0, 0.5), got {self.label_smoothing}")

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        eps = self.label_smoothing
        return -(1 - eps) * F.logsigmoid(self.beta * logits) - eps * F.logsigmoid(-self.beta * logits)


@dataclass(frozen=True)
class IPOLoss:
    """``(h - 1/(2 beta))^2``: regresses the log-ratio gap onto a finite target instead of pushing it to infinity."""

    beta: float = 0.1

    def __post_init__(self) -> None:
        _check_beta(self.beta, "IPOLoss")

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        return (logits - 1 / (2 * self.beta)) ** 2


@dataclass
class DPOOutput:
    """Per-pair results, all [B]: ``losses`` (with grad), ``chosen_rewards``/``rejected_rewards`` (detached)."""

    losses: torch.Tensor
    chosen_rewards: torch.Tensor
    rejected_rewards: torch.Tensor

    @property
    def margins(self) -> torch.Tensor:
        return self.chosen_rewards - self.rejected_rewards

    @property
    def accuracy(self) -> torch.Tensor:
        return (self.chosen_rewards > self.rejected_rewards).float()


def preference_logits(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor,
                      ref_chosen: Optional[torch.Tensor], ref_rejected: Optional[torch.Tensor]) -> torch.Tensor:
    """``h`` [B]; a missing reference (both ``None``) means the reference-free objective ``h = ell(c) - ell(r)``."""
    if (ref_chosen is None) != (ref_rejected is None):
        raise ValueError("give both reference log-probs or neither")
    h = policy_chosen - policy_rejected
    if ref_chosen is not None:
        h = h - (ref_chosen - ref_rejected)
    return h


def dpo_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, ref_chosen: Optional[torch.Tensor],
             ref_rejected: Optional[torch.Tensor], loss_fn: PreferenceLoss, *, reference_free: bool = False) -> DPOOutput:
    """DPO family loss on image log-likelihoods [B] (policy with grad, reference without).

    ``reference_free=True`` must be passed to run without a reference (an explicit choice, never a silent mode).
    """
    if ref_chosen is None and not reference_free:
        raise ValueError("no reference log-probs given: pass reference_free=True to train without a reference")
    if ref_chosen is not None and reference_free:
        raise ValueError("reference_free=True but reference log-probs were given")
    h = preference_logits(policy_chosen, policy_rejected, ref_chosen, ref_rejected)
    rc = torch.zeros_like(policy_chosen) if ref_chosen is None else ref_chosen
    rr = torch.zeros_like(policy_rejected) if ref_rejected is None else ref_rejected
    return DPOOutput(
        losses=loss_fn(h),
        chosen_rewards=(loss_fn.beta * (policy_chosen - rc)).detach(),
        rejected_rewards=(loss_fn.beta * (policy_rejected - rr)).detach(),
    )
