"""A cheap, scripted world for DPO smoke runs and tests: synthetic pairs and a judge that needs no model.

* :func:`toy_pairs`: pairs whose chosen images use only the lower half of the codebook and rejected images only the
  upper half, so a policy that learns the preference is easy to see in the implied rewards.
* :class:`MeanChannelJudge`: an ``OutcomeJudge`` whose score is the mean of one RGB channel in [0, 1] (yes when it
  is at least ``threshold``). Deterministic and free, it stands in for ORM/PARM in the iterative-DPO smoke test.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from reward_models.base import JudgeCost, JudgeOutput, validate_judge_inputs
from showo.tokens import TokenLayout

from .data import PreferencePair

__all__ = ["MeanChannelJudge", "toy_pairs"]


def toy_pairs(layout: TokenLayout, prompts: Sequence[str], num_pairs: int, seed: int = 0) -> list[PreferencePair]:
    """``num_pairs`` pairs cycling over ``prompts``: chosen codes < K/2, rejected codes >= K/2 (K = codebook size)."""
    g = torch.Generator().manual_seed(seed)
    half, n = layout.codebook_size // 2, layout.num_image_tokens
    pairs = []
    for i in range(num_pairs):
        chosen = torch.randint(0, half, (n,), generator=g).tolist()
        rejected = torch.randint(half, layout.codebook_size, (n,), generator=g).tolist()
        pairs.append(PreferencePair(prompts[i % len(prompts)], chosen, rejected, 1.0, 0.0, {"toy": True}))
    return pairs


@dataclass(frozen=True)
class MeanChannelJudge:
    """Score = mean of RGB channel ``channel`` in [0, 1]; ``answer_yes`` = score >= ``threshold``."""

    channel: int = 0
    threshold: float = 0.5

    def score(self, prompts: Sequence[str], images: Sequence[Image.Image]) -> JudgeOutput:
        validate_judge_inputs(prompts, images)
        scores = torch.tensor([float(np.asarray(im)[..., self.channel].mean()) / 255.0 for im in images])
        yes = (scores >= self.threshold).float()
        return JudgeOutput(scores=scores, components={"answer_yes": yes, "answer_no": 1 - yes},
                           cost=JudgeCost(forward_passes=len(images), images_scored=len(images)))
