"""A batch of preference pairs and its masked-token log-likelihoods (imagegen_cot.md §8.3).

The masks of pair ``i`` in epoch ``e`` come from ``seeded_generator(seed, e, i)`` alone: policy, frozen reference and
the precomputed-reference cache therefore see the same corruptions, whatever the batch size, accumulation or process.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch

from common.seeding import seeded_generator
from showo.logprob import MaskedBatch, MaskingConfig, draw_masked_batch, image_logprob
from showo.tokens import TokenLayout

from .data import PreferencePair

__all__ = ["PairBatch", "collate_pairs", "mask_pairs", "pair_logprobs"]


@dataclass
class PairBatch:
    """B pairs: ``indices`` [B] into the dataset, ``chosen``/``rejected`` [B, N] codes, ``margins`` [B] (NaN if unscored)."""

    indices: list[int]
    epoch: int
    prompts: list[str]
    prompt_ids: list[list[int]]
    chosen: torch.Tensor
    rejected: torch.Tensor
    margins: torch.Tensor

    def __len__(self) -> int:
        return len(self.indices)


def collate_pairs(pairs: Sequence[PreferencePair], prompt_ids: Sequence[Sequence[int]], indices: Sequence[int],
                  epoch: int) -> PairBatch:
    """Gather pairs ``indices`` (``prompt_ids[i]`` = tokenized ``pairs[i].prompt``)."""
    sel = [pairs[i] for i in indices]
    margins = [float("nan") if p.margin is None else p.margin for p in sel]
    return PairBatch(list(indices), epoch, [p.prompt for p in sel], [list(prompt_ids[i]) for i in indices],
                     torch.tensor([p.chosen for p in sel], dtype=torch.long),
                     torch.tensor([p.rejected for p in sel], dtype=torch.long),
                     torch.tensor(margins, dtype=torch.float32))


def mask_pairs(batch: PairBatch, layout: TokenLayout, masking: MaskingConfig, seed: int) -> MaskedBatch:
    """[2B * K] rows: chosen rows first, then rejected. The two images of a pair get independent masks and prompt
    dropout (the official recipe), or the same ones with ``masking.pair_masks="shared"`` (a fresh generator from the
    same seed: the draws never depend on the codes)."""
    gens = [seeded_generator(seed, batch.epoch, i) for i in batch.indices]
    chosen = draw_masked_batch(batch.prompt_ids, batch.chosen, layout, gens, masking)
    if masking.pair_masks == "shared":
        gens = [seeded_generator(seed, batch.epoch, i) for i in batch.indices]
    rejected = draw_masked_batch(batch.prompt_ids, batch.rejected, layout, gens, masking)
    return MaskedBatch.cat([chosen, rejected])


def pair_logprobs(model, masked: MaskedBatch, layout: TokenLayout,
                  device: Optional[torch.device] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One forward over chosen and rejected together (TRL's concatenated forward) -> ``(ell_chosen [B], ell_rejected [B])``."""
    ell = image_logprob(model, masked.to(device) if device is not None else masked, layout)
    return ell.chunk(2)
