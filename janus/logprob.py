"""Teacher-forced log-probabilities of Janus-Pro, with gradients (reference t2i_r1.md §5.1–5.2, §11.3).

* :func:`image_logprobs`: ``[B, N]`` log-probs of given image codes. The input is the image prompt's text embeddings
  followed by the generation embeddings of codes ``0..N-2``; the generation head reads the hidden states at the last
  prompt position and at every code but the last. ``guidance_scale=None`` (T2I-R1's choice, the default) scores the
  conditional branch alone; a number w scores the distribution the sampler draws from,
  ``log_softmax((u + w (c - u)) / T)`` (two passes, gradients through both rows).
* :func:`text_logprobs`: ``[B, L]`` log-probs of given text (CoT) tokens after a prompt, through ``lm_head``.

Rows are left-padded with per-row position ids, exactly as in the sampling loops (:mod:`janus.pipeline`,
:mod:`janus.text`), so a row's values do not depend on its batch, and the values equal the per-step log-probs the
loops record (tested to 1e-10 in float64).
"""
from __future__ import annotations

from typing import Optional, Sequence, Union

import torch

from .draw import top_k_filter
from .prompting import left_pad, positions

Rows = Union[Sequence[Sequence[int]], tuple[torch.Tensor, torch.Tensor]]


def _padded(rows: Rows, pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    if isinstance(rows, tuple) and len(rows) == 2 and isinstance(rows[0], torch.Tensor):
        ids, mask = rows
        return ids.to(device), mask.to(device)
    return left_pad(rows, pad_id, device)


def uncond_rows(ids: torch.Tensor, mask: torch.Tensor, pad_id: int) -> torch.Tensor:
    """Official unconditional rows of left-padded prompts: every real token but the first and the last -> pad."""
    real = mask.bool()
    first = real & (positions(mask) == 0)
    last = torch.zeros_like(real)
    last[:, -1] = True
    return torch.where(real & ~first & ~last, torch.full_like(ids, pad_id), ids)


def _lp_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.promote_types(dtype, torch.float32)


def image_logprobs(model, prompt: Rows, tokens: torch.Tensor, *, pad_id: int, guidance_scale: Optional[float] = None,
                   temperature: float = 1.0, top_k: Optional[int] = None, upcast_logits: bool = False) -> torch.Tensor:
    """[B, N] log-probs of image codes ``tokens`` [B, N] after image prompts.

    ``prompt``: unpadded id lists ``[bos, ..., <begin_of_image>]`` or a left-padded ``(ids, mask)`` pair such as
    :class:`janus.pipeline.PipelineOutput`'s ``prompt_ids`` / ``prompt_mask``. ``temperature``, ``top_k`` and
    ``upcast_logits`` only matter with guidance (they shape the sampling distribution, as in the pipeline).
    """
    device = next(model.parameters()).device
    ids, mask = _padded(prompt, pad_id, device)
    tokens = tokens.to(device).long()
    b, n = tokens.shape
    if ids.shape[0] != b:
        raise ValueError(f"{ids.shape[0]} prompts for {b} token rows")
    if guidance_scale is not None:
        ids, mask = torch.cat([ids, uncond_rows(ids, mask, pad_id)]), mask.repeat(2, 1)
        tokens_in = tokens.repeat(2, 1)
    else:
        tokens_in = tokens
    p = ids.shape[1]
    embeds = torch.cat([model.get_input_embeddings()(ids),
                        model.prepare_embeddings_for_image_generation(tokens_in[:, :-1])], dim=1)
    full_mask = torch.cat([mask, mask.new_ones((mask.shape[0], n - 1))], dim=1)
    hidden = model.model.language_model(inputs_embeds=embeds, attention_mask=full_mask,
                                        position_ids=positions(full_mask), use_cache=False).last_hidden_state
    logits = model.model.generation_head(hidden[:, p - 1:])  # [R, N, V]
    if guidance_scale is None:
        scores = logits[:b]
    else:
        if upcast_logits:
            logits = logits.float()
        cond, uncond = logits[:b], logits[b:]
        scores = (uncond + guidance_scale * (cond - uncond)) / temperature
        if top_k is not None:
            scores = top_k_filter(scores, top_k)
    return torch.log_softmax(scores.to(_lp_dtype(scores.dtype)), -1).gather(-1, tokens[..., None])[..., 0]


def text_logprobs(model, prompt: Rows, completion_ids: torch.Tensor, completion_mask: Optional[torch.Tensor] = None,
                  *, pad_id: int, temperature: float = 1.0) -> torch.Tensor:
    """[B, L] log-probs of ``completion_ids`` [B, L] (right-padded, ``completion_mask`` 1 on real tokens) after
    left-padded ``prompt`` rows; 0 where the mask is 0. T2I-R1 scores the CoT at temperature 1 (full vocabulary)."""
    device = next(model.parameters()).device
    ids, mask = _padded(prompt, pad_id, device)
    completion_ids = completion_ids.to(device).long()
    if completion_mask is None:
        completion_mask = torch.ones_like(completion_ids)
    completion_mask = completion_mask.to(device).long()
    p = ids.shape[1]
    full_ids = torch.cat([ids, completion_ids], dim=1)
    full_mask = torch.cat([mask, completion_mask], dim=1)
    hidden = model.model.language_model(inputs_embeds=model.get_input_embeddings()(full_ids), attention_mask=full_mask,
                                        position_ids=positions(full_mask), use_cache=False).last_hidden_state
    logits = model.lm_head(hidden[:, p - 1: -1])  # [B, L, V]
    logits = logits.to(_lp_dtype(logits.dtype)) / temperature
    lp = torch.log_softmax(logits, -1).gather(-1, completion_ids[..., None])[..., 0]
    return lp * completion_mask
