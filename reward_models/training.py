"""Loss, collation and parameter-selection helpers of the judge fine-tuning recipe (``scripts/train_judge.py``).

The recipe fine-tunes LLaVA-OneVision on yes/no (and explanation) conversations, as the released ORM/PARM recipes
do with the LLaVA-NeXT trainer (imagegen_cot.md §4.2, §6.5): the loss is the cross-entropy of the **assistant
tokens only** (answer text + the closing ``<|im_end|>``); system prompt, questions, image tokens, role headers
and padding are ignored (label ``-100``).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from PIL import Image

__all__ = ["IGNORE_INDEX", "JudgeCollator", "answer_token_loss", "assistant_labels", "parameter_groups"]

IGNORE_INDEX = -100


def answer_token_loss(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean next-token cross-entropy over the labelled positions.

    Args:
        logits: ``[B, L, V]``; position t predicts token t + 1.
        labels: ``[B, L]`` token ids, ``IGNORE_INDEX`` where no loss is taken.

    Returns:
        ``(loss, count)``: the scalar mean over the ``count`` labelled next tokens of the batch (float32).
    """
    if logits.shape[:2] != labels.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and labels {tuple(labels.shape)} disagree on [B, L]")
    targets = labels[:, 1:]  # [B, L-1]
    count = (targets != IGNORE_INDEX).sum()
    if count == 0:
        raise ValueError("batch has no answer tokens to train on (every label is IGNORE_INDEX)")
    loss = F.cross_entropy(
        logits[:, :-1].float().reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE_INDEX,
        reduction="sum",
    )
    return loss / count, count


def assistant_labels(input_ids: torch.Tensor, header: Sequence[int], end_id: int) -> torch.Tensor:
    """Labels ``[B, L]`` that keep the tokens of every assistant turn and ignore the rest.

    An assistant turn starts after the token sequence ``header`` (``<|im_start|>assistant\\n``) and ends with
    ``end_id`` (``<|im_end|>``), which is kept so the judge learns to stop after its answer.
    """
    labels = torch.full_like(input_ids, IGNORE_INDEX)
    header = list(header)
    width = len(header)
    for b, row in enumerate(input_ids.tolist()):
        t = 0
        while t + width <= len(row):
            if row[t : t + width] != header:
                t += 1
                continue
            start = t + width
            end = start
            while end < len(row) and row[end] != end_id:
                end += 1
            if end == len(row):
                raise ValueError(f"sample {b}: assistant turn at token {start} has no closing token {end_id}")
            labels[b, start : end + 1] = input_ids[b, start : end + 1]
            t = end + 1
    return labels


@dataclass
class JudgeCollator:
    """Turns ``[(conversation, image), ...]`` into model inputs plus ``labels``.

    ``processor`` is a ``LlavaOnevisionProcessor`` (its tokenizer must know ``<|im_start|>``/``<|im_end|>``);
    ``chat_template`` renders the whole conversation without a generation prompt. Position ids count real tokens,
    so the padding side does not change the result.
    """

    processor: object
    chat_template: str | None = None

    def __post_init__(self) -> None:
        tokenizer = self.processor.tokenizer
        self.header = tokenizer.encode("<|im_start|>assistant\n", add_special_tokens=False)
        self.end_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
        if self.end_id is None or self.end_id == tokenizer.unk_token_id:
            raise ValueError("the judge tokenizer has no '<|im_end|>' token: not a qwen_1_5 chat checkpoint")

    def render(self, conversation: Sequence[dict[str, str]]) -> str:
        messages = [{"role": t["role"], "content": [{"type": "text", "text": t["content"]}]} for t in conversation]
        return self.processor.apply_chat_template(
            messages, chat_template=self.chat_template, tokenize=False, add_generation_prompt=False
        )

    def __call__(self, batch: Sequence[tuple[Sequence[dict[str, str]], Image.Image]]) -> dict[str, torch.Tensor]:
        texts = [self.render(conversation) for conversation, _ in batch]
        images = [image for _, image in batch]
        inputs = dict(self.processor(text=texts, images=images, padding=True, return_tensors="pt"))
        labels = assistant_labels(inputs["input_ids"], self.header, self.end_id)
        inputs["labels"] = labels.masked_fill(inputs["attention_mask"] == 0, IGNORE_INDEX)
        inputs["position_ids"] = (inputs["attention_mask"].long().cumsum(-1) - 1).clamp(min=0)
        return inputs


def parameter_groups(
    model: torch.nn.Module,
    *,
    lr: float,
    vision_lr: float | None,
    train_vision_tower: bool,
    train_projector: bool,
    train_language_model: bool,
    weight_decay: float = 0.0,
) -> list[dict]:
    """Freeze / unfreeze LLaVA-OneVision parts (LLaVA-NeXT's ``mm_tunable_parts``) and build optimizer groups.

    The vision tower gets ``vision_lr`` (``--mm_vision_tower_lr`` 2e-6 in the released recipe), everything else
    ``lr``. Parameters already frozen (e.g. by LoRA) stay frozen. Returns groups of the trainable parameters.
    """
    parts = {"vision_tower": train_vision_tower, "multi_modal_projector": train_projector}
    vision, other = [], []
    for name, param in model.named_parameters():
        if "vision_tower" in name:
            wanted = parts["vision_tower"]
        elif "multi_modal_projector" in name or "image_newline" in name:
            wanted = parts["multi_modal_projector"]
        else:
            wanted = train_language_model
        param.requires_grad_(param.requires_grad and wanted)
        if param.requires_grad:
            (vision if "vision_tower" in name else other).append(param)
    groups = [{"params": other, "lr": lr, "weight_decay": weight_decay}]
    if vision:
        groups.append({"params": vision, "lr": lr if vision_lr is None else vision_lr, "weight_decay": weight_decay})
    if not vision and not other:
        raise ValueError("no trainable parameters: enable at least one of vision tower / projector / language model")
    return [g for g in groups if g["params"]]
