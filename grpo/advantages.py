"""Group-relative advantages (t2i_r1.md §6.1 step 4, §6.2).

For a batch laid out as consecutive groups of ``G`` samples of one prompt (rows ``[gG, (g+1)G)`` belong to group
``g``), BiCoT-GRPO uses the group z-score

    A_i = (r_i - mean_group(r)) / (std_group(r) + eps)

with **torch's default unbiased std** (divisor ``G - 1``) and ``eps = 1e-4`` (the official trainer). The same
scalar ``A_i`` is later broadcast to every text and image token of sample ``i``. A group whose rewards are all equal
gets ``A = 0`` exactly (numerator 0), which is why :func:`zero_std_groups` is worth logging.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["GroupZScore", "group_advantages", "group_view", "zero_std_groups"]


def group_view(values: torch.Tensor, group_size: int) -> torch.Tensor:
    """``[B]`` -> ``[B / G, G]``; a clear error when ``B`` is not a whole number of groups."""
    if values.dim() != 1:
        raise ValueError(f"expected a 1-D tensor of per-sample values, got shape {tuple(values.shape)}")
    if group_size < 1:
        raise ValueError(f"group_size must be >= 1, got {group_size}")
    if values.numel() == 0 or values.numel() % group_size:
        raise ValueError(
            f"{values.numel()} samples are not a whole number of groups of {group_size} (groups must stay whole)"
        )
    return values.view(-1, group_size)


def group_advantages(
    rewards: torch.Tensor, group_size: int, *, eps: float = 1e-4, unbiased: bool = True, scale: bool = True
) -> torch.Tensor:
    """Group z-score advantages ``[B]`` of rewards ``[B]`` (official: ``eps=1e-4``, ``unbiased=True``).

    ``scale=False`` keeps only the centring ``r - mean`` (no division by the std). The unbiased std needs two
    samples per group, so ``group_size=1`` is an error when ``scale`` is on.
    """
    if eps < 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    if scale and unbiased and group_size < 2:
        raise ValueError("the unbiased group std needs group_size >= 2 (a group of 1 has no spread)")
    values = rewards if rewards.is_floating_point() else rewards.float()  # float64 stays float64
    grouped = group_view(values, group_size)  # [n_groups, G]
    centred = grouped - grouped.mean(dim=1, keepdim=True)
    if not scale:
        return centred.reshape(-1)
    std = grouped.std(dim=1, unbiased=unbiased, keepdim=True)
    return (centred / (std + eps)).reshape(-1)


def zero_std_groups(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """``[n_groups]`` bool: every reward of the group is identical (the group carries no learning signal).

    Exact equality (``max == min``) rather than ``std < tol``: summing identical floats can leave a tiny non-zero
    std, while identical rewards are what a saturated or silent reward produces.
    """
    grouped = group_view(rewards, group_size)
    return grouped.max(dim=1).values == grouped.min(dim=1).values


@dataclass(frozen=True)
class GroupZScore:
    """:func:`group_advantages` as a ``_target_``-selectable object (defaults = the official trainer)."""

    eps: float = 1e-4
    unbiased: bool = True
    scale: bool = True

    def __call__(self, rewards: torch.Tensor, group_size: int) -> torch.Tensor:
        return group_advantages(rewards, group_size, eps=self.eps, unbiased=self.unbiased, scale=self.scale)
