"""Chat templates, prompt ids, padding and the classifier-free-guidance rows of Janus-Pro (t2i_r1.md §3.2, §4.2).

**Templates.** Janus and T2I-R1 render conversations with DeepSeek's ``deepseek`` separator style
(``apply_sft_template_for_multi_turn_prompts``): ``"{system}\\n\\n"`` when a system prompt is given, then
``"{User}: {text}\\n\\n{Assistant}:"`` (the message is stripped; an empty message renders as ``"{User}:"`` with no
separator, as in the official function). Janus-Pro's own examples and transformers' ``JanusProcessor`` template use
the roles ``<|User|>`` / ``<|Assistant|>`` (:data:`JANUS_PRO`, our default); T2I-R1's trainer passes ``User`` /
``Assistant`` (Janus-1 style, :data:`T2I_R1_OFFICIAL`), the mismatch later work (IRIS) corrected.

**Prompt ids** are the official ``tokenizer.encode(sft_format + "<begin_of_image>")``: BOS, the text tokens, BOI.

**Rows.** A batch of prompts of different lengths is left-padded; each row gets the attention mask of its own
tokens and position ids counted from its first real token, so every row computes what it would compute alone
(the official sampler never pads: one prompt repeated ``parallel_size`` times). The unconditional row of a prompt is
built as the official sampler builds it: a copy of the prompt's ids with positions ``1:-1`` replaced by the pad id,
keeping BOS and ``<begin_of_image>`` (so it has the prompt's length). Rows are stacked ``[cond; uncond]``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch

from .layout import JanusLayout


@dataclass(frozen=True)
class ChatTemplate:
    """DeepSeek's separator-style template with the given role names."""

    user: str
    assistant: str
    name: str

    def render(self, text: str, system: str = "") -> str:
        head = f"{system.strip()}\n\n" if system.strip() else ""
        text = text.strip()
        user = f"{self.user}: {text}\n\n" if text else f"{self.user}:"
        return f"{head}{user}{self.assistant}:"


JANUS_PRO = ChatTemplate("<|User|>", "<|Assistant|>", "janus_pro")
T2I_R1_OFFICIAL = ChatTemplate("User", "Assistant", "t2i_r1_official")


def chat_template(official_t2i_r1: bool = False) -> ChatTemplate:
    """The Janus-Pro template (default) or T2I-R1's ``User:`` / ``Assistant:`` variant."""
    return T2I_R1_OFFICIAL if official_t2i_r1 else JANUS_PRO


def encode(tokenizer, layout: JanusLayout, text: str, *, image: bool) -> list[int]:
    """``[bos] + tokens(text)`` followed by ``<begin_of_image>`` when ``image``."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return [layout.bos_id, *ids, *([layout.boi_id] if image else [])]


def image_prompt(prompt: str, cot: Optional[str]) -> str:
    """T2I-R1's image prompt: ``"{prompt}. {cot}"`` (the raw prompt alone when there is no CoT)."""
    return prompt if cot is None else f"{prompt}. {cot}"


def official_uncond(ids: Sequence[int], pad_id: int) -> list[int]:
    """The official unconditional row: ``ids`` with positions ``1:-1`` set to ``pad_id`` (BOS and BOI kept)."""
    if len(ids) < 2:
        raise ValueError(f"a prompt needs at least BOS and <begin_of_image>, got {list(ids)}")
    return [ids[0], *([pad_id] * (len(ids) - 2)), ids[-1]]


def left_pad(seqs: Sequence[Sequence[int]], pad_id: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """``[B, L]`` ids left-padded with ``pad_id`` and the ``[B, L]`` long attention mask (0 on pads)."""
    if not seqs:
        raise ValueError("no sequences to pad")
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        if len(s):
            ids[i, width - len(s):] = torch.as_tensor(list(s), dtype=torch.long)
            mask[i, width - len(s):] = 1
    return ids.to(device), mask.to(device)


def positions(mask: torch.Tensor) -> torch.Tensor:
    """``[B, L]`` position ids counted from each row's first attended token (pads get 0)."""
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


def image_rows(seqs: Sequence[Sequence[int]], pad_id: int, guidance: bool,
               device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """LM rows of an image batch: ``[R, L]`` ids and mask, ``R = 2B`` ``[cond; uncond]`` with guidance else ``B``."""
    rows = list(seqs) + ([official_uncond(s, pad_id) for s in seqs] if guidance else [])
    return left_pad(rows, pad_id, device)


def check_image_prompt(ids: Sequence[int], layout: JanusLayout, index: Optional[int] = None) -> None:
    where = "" if index is None else f" (prompt {index})"
    if len(ids) < 2 or ids[0] != layout.bos_id or ids[-1] != layout.boi_id:
        raise ValueError(f"image prompt ids{where} must start with bos={layout.bos_id} and end with "
                         f"<begin_of_image>={layout.boi_id}, got {list(ids)[:3]}...{list(ids)[-3:]}")
