"""Weighted combination of outcome judges with per-judge normalisation (T2I-R1 reward ensemble, t2i_r1.md §8.5).

Judges live on different scales (HPS ~0.2-0.35, CLIPScore ~0.5-1, P("yes") in [0, 1]), so each judge's scores
are first normalised *within the batch* by a :class:`Normalizer`, then combined:

    score_b = sum_j  weight_j * normalize_j(s_{j, b})

T2I-R1's own combination is an unweighted sum of the raw rewards followed by a group z-score: that is
``normalizer=Identity()`` with unit weights here, the group z-score being the policy optimiser's job.

Normalizers are small callables selected with Hydra ``_target_`` (no string dispatch). Batch-level normalisers
make a sample's score depend on the rest of the batch by design: call the ensemble on a whole group, or pass
``group_size`` to score several groups in one batched call and normalise within each group of consecutive rows.
"""
from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Protocol

import torch
from PIL import Image

from reward_models.base import JudgeCost, JudgeOutput, OutcomeJudge, validate_judge_inputs

__all__ = ["Identity", "JudgeEnsemble", "MinMax", "Normalizer", "Rank", "ZScore", "expert_weights"]


class Normalizer(Protocol):
    def __call__(self, scores: torch.Tensor) -> torch.Tensor:
        """``[B]`` -> ``[B]`` float."""
        ...


class Identity:
    """Raw scores."""

    def __call__(self, scores: torch.Tensor) -> torch.Tensor:
        return scores.float()


class ZScore:
    """``(s - mean) / (std + eps)`` with the population std (``unbiased=False``); a constant batch gives zeros."""

    def __init__(self, eps: float = 1e-6) -> None:
        self.eps = eps

    def __call__(self, scores: torch.Tensor) -> torch.Tensor:
        s = scores.float()
        return (s - s.mean()) / (s.std(unbiased=False) + self.eps)


class MinMax:
    """``(s - min) / (max - min)`` in [0, 1]; a constant batch gives zeros (it carries no preference)."""

    def __call__(self, scores: torch.Tensor) -> torch.Tensor:
        s = scores.float()
        span = s.max() - s.min()
        if span == 0:
            return torch.zeros_like(s)
        return (s - s.min()) / span


class Rank:
    """Rank in [0, 1]: ``rank / (B - 1)`` with the lowest score 0; ties share their average rank; B = 1 gives 0."""

    def __call__(self, scores: torch.Tensor) -> torch.Tensor:
        s = scores.float()
        n = s.numel()
        if n == 1:
            return torch.zeros_like(s)
        less = (s[None, :] < s[:, None]).sum(dim=1).float()  # [B] how many scores are strictly smaller
        equal = (s[None, :] == s[:, None]).sum(dim=1).float()  # [B] ties, self included
        return (less + (equal - 1) / 2) / (n - 1)


def expert_weights(weights: Mapping[str, float] | None, names: Collection[str], what: str) -> dict[str, float]:
    """One weight per name of ``names`` (in their order): ``weights[name]``, or 1.0 where it has none.

    A weight for a name that is not among ``names`` is an error (``what`` names them: "judges", "rewards").
    """
    weights = dict(weights or {})
    unknown = sorted(set(weights) - set(names))
    if unknown:
        raise ValueError(f"weights given for unknown {what} {unknown}; {what} are {sorted(names)}")
    return {name: float(weights.get(name, 1.0)) for name in names}


class JudgeEnsemble:
    """An :class:`OutcomeJudge` that combines named judges.

    Args:
        judges: name -> judge; names become component prefixes (``"hps"``, ``"orm"``, ...).
        weights: name -> weight; missing names weigh 1.0, unknown names are an error.
        normalizer: applied to each judge's ``[B]`` scores before weighting (default :class:`ZScore`).

    The output's components hold each judge's raw scores (``<name>``), normalised scores (``<name>/normalized``)
    and every component of its output (``<name>/<component>``); its cost is the sum of the judges' costs.
    """

    def __init__(
        self,
        judges: Mapping[str, OutcomeJudge],
        weights: Mapping[str, float] | None = None,
        normalizer: Normalizer | None = None,
    ) -> None:
        if not judges:
            raise ValueError("JudgeEnsemble needs at least one judge")
        weights = expert_weights(weights, judges, "judges")
        for name, judge in judges.items():
            if not isinstance(judge, OutcomeJudge):
                raise TypeError(f"judges[{name!r}] ({type(judge).__name__}) has no score(prompts, images) method")
        self.judges = dict(judges)
        self.weights = weights
        self.normalizer = normalizer if normalizer is not None else ZScore()

    def score(
        self, prompts: Sequence[str], images: Sequence[Image.Image], *, group_size: int | None = None
    ) -> JudgeOutput:
        """``scores`` ``[B]`` = weighted sum of the normalised judge scores.

        ``group_size``: normalise within each block of ``group_size`` consecutive rows (GRPO groups) instead of over
        the whole batch; the judges still score the whole batch at once.
        """
        validate_judge_inputs(prompts, images)
        if group_size is not None and (group_size < 1 or len(prompts) % group_size):
            raise ValueError(f"{len(prompts)} prompts are not a whole number of groups of {group_size}")
        total = torch.zeros(len(prompts))
        components: dict[str, torch.Tensor] = {}
        cost = JudgeCost()
        for name, judge in self.judges.items():
            out = judge.score(prompts, images)
            if len(out) != len(prompts):
                raise ValueError(f"judge {name!r} returned {len(out)} scores for {len(prompts)} prompts")
            normalized = self._normalize(out.scores.float().cpu(), group_size)
            total = total + self.weights[name] * normalized
            components[name] = out.scores.float().cpu()
            components[f"{name}/normalized"] = normalized
            components.update({f"{name}/{key}": value for key, value in out.components.items()})
            cost = cost + out.cost
        return JudgeOutput(scores=total, components=components, cost=cost)

    def _normalize(self, scores: torch.Tensor, group_size: int | None) -> torch.Tensor:
        if group_size is None:
            return self.normalizer(scores)
        return torch.cat([self.normalizer(chunk) for chunk in scores.split(group_size)])
