"""Drawing codes and tokens: per-image generators, top-k, one multinomial draw per row (shared by the image loop,
the text sampler and the teacher-forced log-probs, which must filter exactly as the sampler does)."""
from __future__ import annotations

from typing import Sequence, Union

import torch

Generator = Union[None, torch.Generator, Sequence[torch.Generator]]


def top_k_filter(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the ``k`` largest scores of each row (and ties with the k-th), set the others to ``-inf``."""
    k = min(k, scores.shape[-1])
    kth = torch.topk(scores, k, dim=-1).values[..., -1:]
    return scores.masked_fill(scores < kth, float("-inf"))


def draw(probs: torch.Tensor, generator: Generator) -> torch.Tensor:
    """[B] one draw per row of ``probs`` [B, V]: one ``multinomial`` call with a single generator, else per row."""
    if generator is None or isinstance(generator, torch.Generator):
        return torch.multinomial(probs, 1, generator=generator)[:, 0]
    if len(generator) != probs.shape[0]:
        raise ValueError(f"got {len(generator)} generators for a batch of {probs.shape[0]} images")
    return torch.cat([torch.multinomial(probs[i: i + 1], 1, generator=g)[:, 0] for i, g in enumerate(generator)])
