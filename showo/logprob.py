"""The image log-likelihood of Show-o's masked-token model, as DPO needs it (imagegen_cot.md §8.3).

Show-o is a masked (absorbing-state) token model: it predicts every ``[MASK]`` position of an image given the prompt
and the visible tokens. It has no tractable ``log p(image | prompt)``. DPO instead uses the quantity the official
``get_batch_logps`` computes on one random corruption of the image::

    ell(x; m, c) = sum_{j in m} log p_theta(x_j | x_{not m}, c)      m ~ cosine mask schedule, c = prompt (or '')

**Why it is a Monte-Carlo estimate.** ``ell`` is one sample of a random variable: the mask ``m`` (ratio
``cos(pi t / 2)``, ``t ~ U(0, 1)``, positions uniform) and the 10% prompt dropout are random. DPO plugs
``E_m[ell]`` in for ``log pi(x | c)`` (Diffusion-DPO makes the same move with the diffusion ELBO); a single draw is an
unbiased estimate of that expectation, averaging ``num_draws`` independent draws reduces its variance by
``1 / num_draws`` at ``num_draws`` times the compute. Because policy and reference must see *the same* ``m`` (so that
the log-ratio ``ell_theta - ell_ref`` is low-variance), every draw comes from a seeded ``torch.Generator``: the same
generator state yields the same masks for any model, any batch size and any process.

Official recipe: chosen and rejected are corrupted *independently* (each their own mask and prompt dropout);
``<|soi|>``/``<|eoi|>`` are scored too (their labels are not ``-100`` there); predictions are not shifted.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from .loss import IGNORE_INDEX, drop_prompts, mask_image_tokens
from .modeling import ShowoModel
from .prompting import build_t2i_sequences, t2i_attention_mask
from .tokens import TokenLayout

__all__ = ["MaskingConfig", "MaskedBatch", "draw_masked_batch", "image_logprob", "masked_token_logprob"]


@dataclass(frozen=True)
class MaskingConfig:
    """How ``ell`` is drawn.

    Args:
        cond_dropout_prob: probability that the prompt is replaced by the empty one (official 0.1).
        min_masking_rate: lower clip of the mask ratio (official 0.0).
        num_draws: independent (mask, dropout) draws averaged per image (official 1).
        count_special: also score the ``<|soi|>``/``<|eoi|>`` copy targets, as the official ``get_batch_logps``.
        pair_masks: DPO pairs only (:func:`dpo.batch.mask_pairs`): ``"independent"`` (official) draws the chosen and
            the rejected image's masks and dropout separately; ``"shared"`` gives both images of a pair the same draws
            (same mask ratio, positions and dropout), so the tokens the two images share at the same positions score
            alike and the pair's log-likelihood difference comes from where the images differ (Diffusion-DPO shares
            its timestep and noise the same way).
    """

    cond_dropout_prob: float = 0.1
    min_masking_rate: float = 0.0
    num_draws: int = 1
    count_special: bool = True
    pair_masks: str = "independent"

    def __post_init__(self) -> None:
        if self.pair_masks not in ("independent", "shared"):
            raise ValueError(f"masking.pair_masks must be 'independent' or 'shared', got {self.pair_masks!r}")
        if not 0.0 <= self.cond_dropout_prob <= 1.0:
            raise ValueError(f"masking.cond_dropout_prob must be in [0, 1], got {self.cond_dropout_prob}")
        if not 0.0 <= self.min_masking_rate <= 1.0:
            raise ValueError(f"masking.min_masking_rate must be in [0, 1], got {self.min_masking_rate}")
        if self.num_draws < 1:
            raise ValueError(f"masking.num_draws must be >= 1, got {self.num_draws}")


@dataclass
class MaskedBatch:
    """``B`` images x ``K`` draws, row ``b * K + k``: ``input_ids`` [B*K, L], ``attention_mask`` [B*K, 1, L, L] bool,
    ``labels`` [B*K, L] (token ids at scored positions, ``-100`` elsewhere)."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor
    num_draws: int

    def to(self, device) -> "MaskedBatch":
        return MaskedBatch(self.input_ids.to(device), self.attention_mask.to(device), self.labels.to(device), self.num_draws)

    @staticmethod
    def cat(batches: Sequence["MaskedBatch"]) -> "MaskedBatch":
        if len({b.num_draws for b in batches}) != 1:
            raise ValueError("cannot concatenate MaskedBatches with different num_draws")
        return MaskedBatch(*(torch.cat([getattr(b, f) for b in batches]) for f in ("input_ids", "attention_mask", "labels")),
                           num_draws=batches[0].num_draws)


def draw_masked_batch(prompt_ids: Sequence[Sequence[int]], codes: torch.Tensor, layout: TokenLayout,
                      generators: Sequence[torch.Generator], masking: MaskingConfig = MaskingConfig()) -> MaskedBatch:
    """Corrupt each image ``masking.num_draws`` times with its own generator (so rows do not depend on the batch).

    Args:
        prompt_ids: B tokenized prompts (text ids, no specials).
        codes: [B, N] image codes (code space ``0..codebook_size-1``).
        generators: one CPU ``torch.Generator`` per image; each draws ``(mask, dropout)`` K times, in that order.
    """
    b, n = codes.shape
    if n != layout.num_image_tokens:
        raise ValueError(f"codes have {n} tokens per image, the layout expects {layout.num_image_tokens}")
    if len(prompt_ids) != b or len(generators) != b:
        raise ValueError(f"got {len(prompt_ids)} prompts and {len(generators)} generators for {b} images")
    bad = (codes < 0) | (codes >= layout.codebook_size)
    if bool(bad.any()):
        raise ValueError(f"codes must be in [0, {layout.codebook_size}), got {codes[bad][:5].tolist()}")
    rows_ids, rows_labels, rows_prompts = [], [], []
    for i in range(b):
        for _ in range(masking.num_draws):
            ids, labels = mask_image_tokens(codes[i: i + 1].cpu(), layout, generators[i], masking.min_masking_rate)
            rows_ids.append(ids)
            rows_labels.append(labels)
            rows_prompts.extend(drop_prompts([prompt_ids[i]], masking.cond_dropout_prob, generators[i]))
    input_ids = build_t2i_sequences(rows_prompts, layout, torch.cat(rows_ids))
    labels = torch.full_like(input_ids, IGNORE_INDEX)
    labels[:, layout.image_slice] = torch.cat(rows_labels)
    if masking.count_special:
        labels[:, layout.soi_pos] = layout.soi_id
        labels[:, -1] = layout.eoi_id
    return MaskedBatch(input_ids, t2i_attention_mask(input_ids, layout), labels, masking.num_draws)


def masked_token_logprob(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Sum of ``log softmax(logits)[label]`` over positions whose label is not ``-100``: [R, P, V], [R, P] -> [R].

    Unshifted (position ``j`` predicts its own token). Computed as ``logit[label] - logsumexp(logits)`` in float32,
    which never materialises the [R, P, V] log-softmax.
    """
    if logits.shape[:2] != labels.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and labels {tuple(labels.shape)} disagree on [R, P]")
    scored = labels != IGNORE_INDEX
    safe = torch.where(scored, labels, torch.zeros_like(labels))
    logits = logits.float()
    picked = logits.gather(-1, safe.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1)
    return (picked * scored).sum(-1)


def image_logprob(model: ShowoModel, batch: MaskedBatch, layout: TokenLayout) -> torch.Tensor:
    """``ell`` averaged over the draws: [B] (differentiable; run under ``torch.no_grad`` for a reference model).

    Only the rows from ``<|soi|>`` on get logits (the text rows are never scored), which saves the LM head on
    ``text_len`` positions.
    """
    t = layout.text_len
    logits = model(batch.input_ids, batch.attention_mask, logits_rows=slice(t, None)).logits  # [B*K, N+2, V]
    ell = masked_token_logprob(logits, batch.labels[:, t:])  # [B*K]
    return ell.view(-1, batch.num_draws).mean(-1)
