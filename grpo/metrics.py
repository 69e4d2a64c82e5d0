"""Metric names and values of BiCoT-GRPO (TRL's hierarchical names; t2i_r1.md §6.1).

``rewards/<name>/mean|std`` per expert (raw scores) and ``reward/mean|std`` for the aggregate, ``reward/group_std``
(the mean within-group std, the official ``reward_std``), ``advantage/zero_std_groups`` (the fraction of groups
whose rewards are all equal: they get zero advantage and teach nothing), ``cot_length`` (mean counted CoT tokens,
EOS included), and from :class:`~grpo.objective.GRPOLoss`: ``loss`` (the loss itself: the official code logged the
KL under this name before its PR #15), ``kl`` (official: token mean over ``[text ‖ image]``), ``kl/text``,
``kl/image``, ``clip_fraction``. Stds over a batch are unbiased (torch default), 0 for a single sample.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch

from grpo.advantages import group_view, zero_std_groups
from grpo.rollout import Rollout

__all__ = ["COT_LENGTH", "KL", "LOSS", "ZERO_STD_GROUPS", "reward_key", "reward_metrics", "rollout_metrics"]

LOSS = "loss"
KL = "kl"
COT_LENGTH = "cot_length"
ZERO_STD_GROUPS = "advantage/zero_std_groups"


def reward_key(name: str, stat: str) -> str:
    """``rewards/<name>/<stat>`` with ``stat`` in ``mean``, ``std``."""
    if stat not in ("mean", "std"):
        raise ValueError(f"reward statistic must be 'mean' or 'std', got {stat!r}")
    return f"rewards/{name}/{stat}"


def _mean_std(values: torch.Tensor) -> tuple[float, float]:
    values = values.double()
    std = float(values.std()) if values.numel() > 1 else 0.0
    return float(values.mean()), std


def reward_metrics(per_expert: Mapping[str, torch.Tensor], total: torch.Tensor, group_size: int) -> dict[str, float]:
    """Per-expert and aggregate reward statistics of one batch laid out as groups of ``group_size``."""
    metrics: dict[str, float] = {}
    for name, values in per_expert.items():
        metrics[reward_key(name, "mean")], metrics[reward_key(name, "std")] = _mean_std(values)
    metrics["reward/mean"], metrics["reward/std"] = _mean_std(total)
    grouped = group_view(total.double(), group_size)
    metrics["reward/group_std"] = float(grouped.std(dim=1).mean()) if group_size > 1 else 0.0
    metrics[ZERO_STD_GROUPS] = float(zero_std_groups(total, group_size).double().mean())
    return metrics


def rollout_metrics(rollout: Rollout) -> dict[str, float]:
    """Reward metrics (needs ``rollout.reward``) and ``cot_length`` of a rollout."""
    if rollout.reward is None:
        raise ValueError("rollout has no aggregated reward yet (call grpo.rewards.assign_rewards first)")
    metrics = reward_metrics(rollout.rewards, rollout.reward, rollout.group_size)
    metrics[COT_LENGTH] = float(rollout.cot_length.double().mean())
    return metrics
