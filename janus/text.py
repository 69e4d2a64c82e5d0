"""Text sampling with Janus-Pro's LLM: the semantic-level CoT rollout (reference t2i_r1.md §3.3).

A KV-cached loop over left-padded prompts: ``lm_head`` on the last hidden state, logits in (at least) float32 as
transformers' ``generate`` computes them, ``/ temperature``, optional top-k, ``softmax``, one multinomial draw per
row. Sampling parameters are explicit arguments: T2I-R1 passed none, so its CoT used the LLM's generation defaults,
temperature 1 and transformers 4.x's top-k 50. A row ends at its first EOS (kept, as in the completion mask
T2I-R1 builds); later positions hold the pad id with mask 0. The loop stops when every row has ended or after
``max_new_tokens`` (T2I-R1: 1024).

``generator``: one ``torch.Generator`` (one draw call per position over the batch, transformers' order) or one per
row, so a CoT does not depend on the other prompts of its batch; a row that has ended draws no more from its own
generator, so what that generator draws next (the row's image) does not depend on its batch either.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch

from .draw import Generator, draw, top_k_filter
from .prompting import left_pad, positions


@dataclass
class TextSample:
    prompt_ids: torch.Tensor  # [B, P] left-padded prompts
    prompt_mask: torch.Tensor  # [B, P]
    completion_ids: torch.Tensor  # [B, L] sampled tokens, pad after the first EOS
    completion_mask: torch.Tensor  # [B, L] 1 up to and including the first EOS
    logprobs: torch.Tensor  # [B, L] model log-probs at temperature 1 over the full vocabulary (0 where masked)
    sample_logprobs: torch.Tensor  # [B, L] log-probs under the sampling distribution (temperature, top-k)
    forward_passes: int = 0


@torch.no_grad()
def sample_text(model, prompts: Sequence[Sequence[int]], *, eos_id: int, pad_id: int, max_new_tokens: int,
                temperature: float = 1.0, top_k: Optional[int] = None, generator: Generator = None) -> TextSample:
    """Sample continuations of unpadded prompt id lists (each starting with BOS)."""
    from transformers import DynamicCache

    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be None or >= 1, got {top_k}")
    if isinstance(generator, (list, tuple)) and len(generator) != len(prompts):
        raise ValueError(f"got {len(generator)} generators for {len(prompts)} prompts")
    device = next(model.parameters()).device
    ids, mask = left_pad(prompts, pad_id, device)
    b = ids.shape[0]
    cache = DynamicCache(config=model.config.text_config)
    embeds, pos, rows_mask = model.get_input_embeddings()(ids), positions(mask), mask
    out_ids, logps, sample_logps, masks = [], [], [], []
    running = torch.ones(b, dtype=torch.bool, device=device)
    passes = 0
    for _ in range(max_new_tokens):
        hidden = model.model.language_model(inputs_embeds=embeds, attention_mask=rows_mask, position_ids=pos,
                                            past_key_values=cache, use_cache=True).last_hidden_state
        logits = model.lm_head(hidden[:, -1])
        logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
        scores = logits / temperature
        if top_k is not None:
            scores = top_k_filter(scores, top_k)
        probs = torch.softmax(scores, -1)
        if isinstance(generator, (list, tuple)):
            # one generator per row: a row that has ended draws nothing more, so its generator (which goes on to
            # sample its image) stands where it would had the row been sampled alone
            token = torch.full((b,), pad_id, dtype=torch.long, device=device)
            rows = running.nonzero()[:, 0].tolist()
            token[rows] = draw(probs[rows], [generator[i] for i in rows])
        else:
            token = draw(probs, generator)
        passes += int(running.sum())
        token = torch.where(running, token, torch.full_like(token, pad_id))
        masks.append(running.long())
        zero = logits.new_zeros(())
        logps.append(torch.where(running, torch.log_softmax(logits, -1).gather(-1, token[:, None])[:, 0], zero))
        sample_logps.append(torch.where(running, torch.log_softmax(scores, -1).gather(-1, token[:, None])[:, 0], zero))
        out_ids.append(token)
        running = running & (token != eos_id)
        if not running.any():
            break
        embeds = model.get_input_embeddings()(token)[:, None]
        pos = pos[:, -1:] + 1
        rows_mask = torch.cat([rows_mask, rows_mask.new_ones((b, 1))], dim=1)
    return TextSample(prompt_ids=ids, prompt_mask=mask, completion_ids=torch.stack(out_ids, 1),
                      completion_mask=torch.stack(masks, 1), logprobs=torch.stack(logps, 1),
                      sample_logprobs=torch.stack(sample_logps, 1), forward_passes=passes)
