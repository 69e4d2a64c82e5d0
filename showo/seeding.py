"""Per-image seeds: image ``k`` of prompt ``i`` gets its own generator, whatever the batch, shard or N.

Diffusers convention: pass a list of generators, one per image. The seed of each image is a hash of
``(base_seed, prompt_index, sample_index)``, so adding prompts or samples never changes existing images.
"""
from __future__ import annotations

import hashlib
from typing import Iterable

import torch


def image_seed(base_seed: int, prompt_index: int, sample_index: int) -> int:
    """A 63-bit seed for image ``sample_index`` of prompt ``prompt_index``."""
    digest = hashlib.blake2b(f"imagecot/{base_seed}/{prompt_index}/{sample_index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def generators(seeds: Iterable[int], device: str | torch.device = "cpu") -> list[torch.Generator]:
    return [torch.Generator(device=device).manual_seed(int(s)) for s in seeds]
