"""Rewards of a rollout -> advantages (t2i_r1.md §6.1 steps 3-4, §8.5).

The official reward is the plain sum of the four experts' raw scores (HPS + GIT + GroundingDINO + ORM), scored
against the raw prompt, then the group z-score. Here the experts and their combination are a
:class:`~reward_models.ensemble.JudgeEnsemble` from YAML (``configs/reward/t2i_r1.yaml``: unit weights and the
``Identity`` normaliser = the official sum); any per-expert normaliser is applied *within each group*, and all
groups of a rollout are scored in one batched call.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
from PIL import Image

from grpo.advantages import GroupZScore
from grpo.rollout import Rollout
from reward_models.base import JudgeCost, OutcomeJudge
from reward_models.ensemble import JudgeEnsemble, expert_weights

__all__ = ["RewardBatch", "assign_rewards", "score_samples", "sum_rewards"]


@dataclass
class RewardBatch:
    """``total`` ``[B]`` aggregated reward, ``per_expert`` name -> ``[B]`` raw reward, and what scoring cost."""

    total: torch.Tensor
    per_expert: dict[str, torch.Tensor]
    cost: JudgeCost = field(default_factory=JudgeCost)


def score_samples(
    judge: OutcomeJudge, prompts: Sequence[str], images: Sequence[Image.Image], group_size: int, *, name: str = "reward"
) -> RewardBatch:
    """Score ``B`` images against their raw prompts in one call; groups are ``group_size`` consecutive rows.

    A :class:`JudgeEnsemble` normalises each expert within each group and reports each expert's raw score; any
    other judge is a single expert called ``name``.
    """
    if isinstance(judge, JudgeEnsemble):
        out = judge.score(prompts, images, group_size=group_size)
        per_expert = {expert: out.components[expert].float() for expert in judge.judges}
    else:
        out = judge.score(prompts, images)
        per_expert = {name: out.scores.float()}
    return RewardBatch(total=out.scores.float().cpu(), per_expert=per_expert, cost=out.cost)


def sum_rewards(per_expert: Mapping[str, torch.Tensor], weights: Mapping[str, float] | None = None) -> torch.Tensor:
    """``[B]`` weighted sum of raw expert rewards (no weights = the official plain sum)."""
    if not per_expert:
        raise ValueError("no rewards to sum")
    weights = expert_weights(weights, per_expert, "rewards")
    return torch.stack([weights[k] * v.float() for k, v in per_expert.items()]).sum(dim=0)


def assign_rewards(rollout: Rollout, rewards: RewardBatch, advantage_fn=GroupZScore()) -> Rollout:
    """Store the rewards in ``rollout`` and compute its advantages ``[B]`` group by group (in place; returned)."""
    if rewards.total.shape != (len(rollout),):
        raise ValueError(f"{tuple(rewards.total.shape)} rewards for a rollout of {len(rollout)} samples")
    rollout.rewards = {k: v.detach().float().cpu() for k, v in rewards.per_expert.items()}
    rollout.reward = rewards.total.detach().float().cpu()
    rollout.advantages = advantage_fn(rollout.reward, rollout.group_size)
    rollout.__post_init__()  # re-validate the shapes of what was just stored
    return rollout
