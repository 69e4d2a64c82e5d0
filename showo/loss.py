"""Show-o's text-to-image training objective (showo.md §13).

* **Masking** (``mask_or_random_replace_tokens``): per image ``t ~ U(0, 1)``, mask ratio ``p = cos(pi t / 2)`` (clipped
  below at ``min_masking_rate``), ``k = max(1, round(N p))`` positions chosen uniformly at random become ``[MASK]``;
  labels hold the original ids there and ``-100`` elsewhere.
* **Prompt dropout** for classifier-free guidance: with probability 0.1 the prompt is replaced by the empty one.
* **Loss**: cross-entropy of ``logits[:, T:]`` against ``labels[:, T:]`` over the full vocabulary, *not shifted* (each
  position predicts its own token, issue #51); the ``<|soi|>``/``<|eoi|>`` copy targets are kept as in the official
  training because their labels are not ``-100``.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
import torch.nn.functional as F

from .prompting import build_t2i_sequences, t2i_attention_mask
from .tokens import TokenLayout

IGNORE_INDEX = -100


def mask_image_tokens(codes: torch.Tensor, layout: TokenLayout, generator: Optional[torch.Generator] = None,
                      min_masking_rate: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """codes [B, N] (code space) -> (image token ids [B, N] with some ``[MASK]``, labels [B, N] token ids / -100)."""
    b, n = codes.shape
    ids = codes.long() + layout.image_offset
    t = torch.rand(b, generator=generator, device=codes.device)
    ratio = torch.cos(math.pi * 0.5 * t).clamp(min=min_masking_rate)
    k = (n * ratio).round().clamp(min=1)  # [B]
    order = torch.rand(b, n, generator=generator, device=codes.device).argsort(dim=-1)
    first_k = torch.arange(n, device=codes.device)[None, :] < k[:, None]  # [B, N] by rank
    masked = torch.zeros_like(first_k).scatter_(1, order, first_k)  # the k positions with the smallest random keys
    labels = torch.where(masked, ids, torch.full_like(ids, IGNORE_INDEX))
    return torch.where(masked, torch.full_like(ids, layout.mask_id), ids), labels


def drop_prompts(prompt_ids: Sequence[Sequence[int]], prob: float, generator: Optional[torch.Generator] = None) -> list[list[int]]:
    """Replace each tokenized prompt by the empty one with probability ``prob`` (CFG training)."""
    keep = torch.rand(len(prompt_ids), generator=generator) >= prob
    return [list(p) if k else [] for p, k in zip(prompt_ids, keep.tolist())]


def build_t2i_batch(prompt_ids: Sequence[Sequence[int]], codes: torch.Tensor, layout: TokenLayout,
                    generator: Optional[torch.Generator] = None, cond_dropout_prob: float = 0.1,
                    min_masking_rate: float = 0.0) -> dict[str, torch.Tensor]:
    """A training batch: ``input_ids`` [B, L], ``attention_mask`` [B, 1, L, L] bool, ``labels`` [B, L]."""
    image_ids, image_labels = mask_image_tokens(codes.cpu(), layout, generator, min_masking_rate)
    input_ids = build_t2i_sequences(drop_prompts(prompt_ids, cond_dropout_prob, generator), layout, image_ids)
    labels = torch.full_like(input_ids, IGNORE_INDEX)
    labels[:, layout.soi_pos] = layout.soi_id
    labels[:, layout.image_slice] = image_labels
    labels[:, -1] = layout.eoi_id
    return {"input_ids": input_ids, "attention_mask": t2i_attention_mask(input_ids, layout), "labels": labels}


def t2i_loss(logits: torch.Tensor, labels: torch.Tensor, layout: TokenLayout) -> torch.Tensor:
    """Unshifted masked-token cross-entropy over positions ``T..L-1``: logits [B, L, V], labels [B, L] -> scalar."""
    t = layout.text_len
    return F.cross_entropy(logits[:, t:].float().reshape(-1, logits.shape[-1]), labels[:, t:].reshape(-1),
                           ignore_index=IGNORE_INDEX)
