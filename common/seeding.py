"""Per-image seeds: image ``k`` of prompt ``i`` gets its own generator, whatever the batch, shard or N.

Diffusers convention: pass a list of generators, one per image. The seed of each image is a hash of
``(base_seed, prompt_index, sample_index)``, so adding prompts or samples never changes existing images.
"""
from __future__ import annotations

import hashlib
from typing import Iterable

import torch


def hash_seed(*parts) -> int:
    """A 63-bit seed from any parts, e.g. ``(seed, step, micro_step, rank)``.

    Hashing (rather than ``seed + index``) keeps neighbouring streams unrelated, and stateless per-step seeds make a
    resumed run draw exactly what an uninterrupted one draws.
    """
    digest = hashlib.blake2b("/".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def seeded_generator(*parts, device: str | torch.device = "cpu") -> torch.Generator:
    return torch.Generator(device=device).manual_seed(hash_seed(*parts))


def image_seed(base_seed: int, prompt_index: int, sample_index: int) -> int:
    """A 63-bit seed for image ``sample_index`` of prompt ``prompt_index``."""
    return hash_seed("imagecot", base_seed, prompt_index, sample_index)


def generators(seeds: Iterable[int], device: str | torch.device = "cpu") -> list[torch.Generator]:
    return [torch.Generator(device=device).manual_seed(int(s)) for s in seeds]


def clone_generator(g: torch.Generator) -> torch.Generator:
    """A new generator in ``g``'s state (it draws what ``g`` would draw next; ``g`` is untouched)."""
    new = torch.Generator(device=g.device)
    new.set_state(g.get_state())
    return new


def clone_generators(gens):
    """:func:`clone_generator` of one generator or of each of a list; ``None`` stays ``None``."""
    if isinstance(gens, torch.Generator):
        return clone_generator(gens)
    return None if gens is None else [clone_generator(g) for g in gens]
