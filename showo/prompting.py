"""Text-to-image sequences and the omni-attention mask (showo.md §7–8).

Sequence layout (``T = max_seq_length + 1`` text positions, ``N`` image tokens)::

    [PAD]*p  <|t2i|> bos prompt... eos | <|soi|> | image_0 .. image_{N-1} | <|eoi|>
    \\_____________ T = 129 ____________/   T        T+1 ..  T+N             T+N+1

Prompts longer than ``T - 3`` tokens are truncated as the official ``UniversalPrompting`` does: the first ``T - 1``
tokens of ``<|t2i|> bos prompt...`` then ``eos`` (with a warning). The empty prompt ``''`` is the unconditional one:
``<|t2i|> bos eos``.
"""
from __future__ import annotations

import warnings
from typing import Optional, Sequence

import torch

from .tokens import TokenLayout


def text_part(prompt_ids: Sequence[int], layout: TokenLayout) -> list[int]:
    """``<|t2i|>, bos, ids..., eos`` left-padded to ``layout.text_len`` (or truncated like the official code)."""
    ids = [layout.t2i_id, layout.bos_id, *prompt_ids, layout.eos_id]
    if len(ids) > layout.text_len:
        warnings.warn(
            f"prompt of {len(prompt_ids)} tokens exceeds max_seq_length={layout.max_seq_length}: "
            f"truncated to its first {layout.text_len - 3} tokens (as the official Show-o prompting does)",
            stacklevel=3,
        )
        return ids[: layout.text_len - 1] + [layout.eos_id]
    return [layout.pad_id] * (layout.text_len - len(ids)) + ids


def unrepresentable(tokenizer, prompts: Sequence[str]) -> dict[str, list[str]]:
    """Prompts whose words the tokenizer maps to its unknown token (``<unk>``), with those words.

    A word-level tokenizer (the tiny and shapes-world models) silently turns any word outside its vocabulary -- e.g. a
    non-ASCII prompt -- into ``<unk>``; recipes warn with this before generating. Byte-level BPE tokenizers (phi-1_5)
    represent every string and return ``{}``.
    """
    unk = getattr(tokenizer, "unk_token_id", None)
    if unk is None:
        return {}
    out = {}
    for prompt in prompts:
        enc = tokenizer(prompt, add_special_tokens=False, return_offsets_mapping=True)
        words = [prompt[a:b] for i, (a, b) in zip(enc["input_ids"], enc["offset_mapping"]) if i == unk]
        if words:
            out[prompt] = words
    return out


def warn_unrepresentable(tokenizer, prompts: Sequence[str]) -> None:
    """``UserWarning`` listing (up to 5) prompts with words the tokenizer cannot represent."""
    bad = unrepresentable(tokenizer, prompts)
    if bad:
        shown = "; ".join(f"{p!r}: {w}" for p, w in list(bad.items())[:5])
        warnings.warn(f"{len(bad)} prompt(s) have words this tokenizer maps to its unknown token (the model sees "
                      f"<unk>): {shown}", stacklevel=2)


class T2IPrompting:
    """Builds t2i token sequences from prompts with any Hugging Face tokenizer (phi-1_5's in real use).

    The tokenizer is called without special tokens: Show-o adds bos/eos itself (phi's tokenizer adds none anyway).
    """

    def __init__(self, tokenizer, layout: TokenLayout) -> None:
        self.tokenizer = tokenizer
        self.layout = layout

    def tokenize(self, prompts: Sequence[str]) -> list[list[int]]:
        if isinstance(prompts, str):
            raise TypeError("prompts must be a list of strings, got a single string")
        out = []
        for p in prompts:
            ids = self.tokenizer(p, add_special_tokens=False)["input_ids"] if p else []
            bad = [i for i in ids if not 0 <= i < self.layout.llm_vocab_size]
            if bad:
                raise ValueError(f"tokenizer produced ids {bad[:5]} outside the text vocabulary of {self.layout.llm_vocab_size}")
            out.append(list(ids))
        return out

    def sequences(self, prompts: Sequence[str], image_tokens: Optional[torch.Tensor] = None) -> torch.Tensor:
        """[B, L] t2i sequences; ``image_tokens`` [B, N] in token-id space (default: all ``[MASK]``)."""
        return build_t2i_sequences(self.tokenize(prompts), self.layout, image_tokens)

    def unconditional(self, batch_size: int, image_tokens: Optional[torch.Tensor] = None) -> torch.Tensor:
        return build_t2i_sequences([[] for _ in range(batch_size)], self.layout, image_tokens)


def build_t2i_sequences(prompt_ids: Sequence[Sequence[int]], layout: TokenLayout,
                        image_tokens: Optional[torch.Tensor] = None) -> torch.Tensor:
    """[B, L] int64 sequences from tokenized prompts (token-id space for ``image_tokens``)."""
    b, n = len(prompt_ids), layout.num_image_tokens
    if image_tokens is None:
        image_tokens = torch.full((b, n), layout.mask_id, dtype=torch.long)
    if tuple(image_tokens.shape) != (b, n):
        raise ValueError(f"image_tokens must have shape [{b}, {n}], got {tuple(image_tokens.shape)}")
    text = torch.tensor([text_part(ids, layout) for ids in prompt_ids], dtype=torch.long).reshape(b, layout.text_len)
    soi = torch.full((b, 1), layout.soi_id, dtype=torch.long)
    eoi = torch.full((b, 1), layout.eoi_id, dtype=torch.long)
    return torch.cat([text, soi, image_tokens.to("cpu", torch.long), eoi], dim=1)


def t2i_attention_mask(input_ids: torch.Tensor, layout: TokenLayout) -> torch.Tensor:
    """Omni-attention mask [B, 1, L, L] (``True`` = may attend) for t2i sequences (showo.md §7.2).

    Text rows are causal; rows from ``<|soi|>`` to ``<|eoi|>`` see every position; pad columns are hidden from every
    row after the last pad and from every image row. Pad rows keep their causal view of pads, so no row is empty.
    Equal to ``official_mask == 0`` of ``create_attention_mask_predict_next(..., rm_pad_in_image=True)``.
    """
    b, length = input_ids.shape
    device = input_ids.device
    pos = torch.arange(length, device=device)
    allowed = (pos[None, :] <= pos[:, None]).expand(b, length, length).clone()  # causal
    is_soi = input_ids == layout.soi_id
    if not bool((is_soi.sum(1) == 1).all()):
        raise ValueError("each t2i sequence must contain exactly one <|soi|>")
    soi_pos = is_soi.float().argmax(1)  # [B]
    image_rows = pos[None, :] >= soi_pos[:, None]  # [B, L]
    allowed |= image_rows[:, :, None]
    is_pad = input_ids == layout.pad_id
    last_pad = torch.where(is_pad, pos[None, :], torch.full_like(pos[None, :], -1)).amax(1)  # [B]
    hide_pads = (pos[None, :] > last_pad[:, None]) | image_rows  # rows that must not see pads
    allowed &= ~(hide_pads[:, :, None] & is_pad[:, None, :])
    return allowed[:, None]


def additive_mask(allowed: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The official additive form: 0 where allowed, ``iinfo(int64).min`` (-2^63) elsewhere."""
    return torch.zeros(allowed.shape, dtype=dtype).masked_fill(~allowed.cpu(), float(torch.iinfo(torch.int64).min)).to(allowed.device)
