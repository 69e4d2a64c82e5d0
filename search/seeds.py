"""Per-candidate seeds: candidate ``c`` of sample slot ``s`` of prompt ``p`` has its own generator.

The seed is a hash of ``(base_seed, prompt_index, sample_index, candidate_index)``, so a candidate is the same image
whether the N paths run in one batch or several, whatever N is, and whichever strategy draws it. Candidate 0 uses
:func:`showo.seeding.image_seed` itself, so candidate 0 of best-of-N is exactly the plain ``scripts/generate.py``
image of that slot (the "first" selection policy is the baseline). Reflection rounds (PARM++) use their own
namespace so that they never collide with search candidates.
"""
from __future__ import annotations

from typing import Sequence

import torch

from common.seeding import generators, hash_seed, image_seed


def candidate_seed(base_seed: int, prompt_index: int, sample_index: int, candidate_index: int) -> int:
    """63-bit seed of one candidate path (candidate 0 = the baseline image of the slot)."""
    if candidate_index < 0:
        raise ValueError(f"candidate_index must be >= 0, got {candidate_index}")
    if candidate_index == 0:
        return image_seed(base_seed, prompt_index, sample_index)
    return hash_seed("imagecot-search", base_seed, prompt_index, sample_index, candidate_index)


def reflection_seed(base_seed: int, prompt_index: int, sample_index: int, round_index: int) -> int:
    """Seed of self-correction round ``round_index`` (1-based) of a slot."""
    return hash_seed("imagecot-reflect", base_seed, prompt_index, sample_index, round_index)


def candidate_generators(seeds: Sequence[int], device: str | torch.device = "cpu") -> list[torch.Generator]:
    """One ``torch.Generator`` per seed, on the device the scheduler samples on."""
    return generators(seeds, device)
