"""BLIP-VQA yes-probability through ``transformers.BlipForQuestionAnswering`` (reference §2).

The official evaluator runs salesforce/BLIP's ``BLIP_VQA`` (``model_base_vqa_capfilt_large.pth``) at 480 px and reads
one decoder step instead of generating an answer:

1. image: RGB, resized to exactly 480 × 480 (bicubic, aspect not kept), CLIP mean / std;
2. question: ``pre_question(chunk + "?")``, BERT-tokenised (longest padding, truncation at 35 tokens), the first
   token (``[CLS]``) overwritten by ``[ENC]`` (id 30523);
3. ViT -> image-grounded BERT encoder over the question -> one decoder step on ``[DEC]`` (30522, BOS) cross-attending
   to the question states **without the question's padding**;
4. ``p = p(yes) / (p(yes) + p(no)) = sigmoid(logit_yes − logit_no)`` from the first-position logits.

HF's port differs in three places handled here: it feeds ``[CLS]`` (fixed: ``input_ids[:, 0] = [ENC]``), its
``generate`` attends to the question with an all-ones mask (we call the decoder ourselves), and the hub checkpoint is
converted at 384 px (577 position rows). At 480 px we interpolate its position table to 901 rows
(``interpolate_pos_encoding``), which approximates the original table (docs/benchmarks.md).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image

__all__ = ["BlipVqa", "CLIP_MEAN", "CLIP_STD"]

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
ENC_TOKEN_ID = 30523  # "[ENC]" in BLIP's bert-base-uncased + 2 vocabulary (30,524 rows)


class BlipVqa:
    """Yes-probabilities of (image, question) pairs.

    Args:
        model: a ``BlipForQuestionAnswering``.
        tokenizer: its BERT tokenizer (must know ``yes`` and ``no`` as single tokens).
        image_size: side of the square input (480 official).
        batch_size: pairs per forward pass (memory only; padding is masked, so scores do not depend on it).
        enc_token_id: id written over ``[CLS]``; default ``[ENC]`` from the tokenizer, else 30523.
        max_question_tokens: truncation length (35 official).
    """

    def __init__(self, model, tokenizer, *, image_size: int = 480, batch_size: int = 32,
                 device: str | torch.device = "cpu", enc_token_id: int | None = None, max_question_tokens: int = 35):
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        self.image_size = image_size
        self.batch_size = batch_size
        self.max_question_tokens = max_question_tokens
        vocab = tokenizer.get_vocab()
        for word in ("yes", "no"):
            if word not in vocab:
                raise ValueError(f"BLIP tokenizer has no single token {word!r}; is this a BLIP VQA tokenizer?")
        self.yes_id, self.no_id = vocab["yes"], vocab["no"]
        self.dec_id = int(model.config.text_config.bos_token_id)  # [DEC] = 30522 in the official vocabulary
        self.enc_id = enc_token_id if enc_token_id is not None else vocab.get("[ENC]", ENC_TOKEN_ID)
        if self.enc_id >= model.config.text_config.vocab_size:
            raise ValueError(f"[ENC] id {self.enc_id} is outside the text vocabulary ({model.config.text_config.vocab_size})")

    @classmethod
    def from_pretrained(cls, path: str | Path, **kwargs) -> BlipVqa:
        """Load a local HF BLIP VQA directory (e.g. ``Salesforce/blip-vqa-capfilt-large`` downloaded beforehand)."""
        from transformers import AutoTokenizer, BlipForQuestionAnswering

        path = Path(path)
        if not path.is_dir():
            raise FileNotFoundError(f"BLIP VQA directory not found: {path} (local paths only; nothing is downloaded)")
        return cls(BlipForQuestionAnswering.from_pretrained(path), AutoTokenizer.from_pretrained(path), **kwargs)

    def pixels(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """``[B, 3, S, S]`` float32: bicubic squash to S × S, then CLIP mean / std."""
        mean = torch.tensor(CLIP_MEAN).view(3, 1, 1)
        std = torch.tensor(CLIP_STD).view(3, 1, 1)
        out = []
        for image in images:
            resized = image.convert("RGB").resize((self.image_size, self.image_size), Image.BICUBIC)
            x = torch.from_numpy(np.asarray(resized, dtype=np.float32) / 255.0).permute(2, 0, 1)
            out.append((x - mean) / std)
        return torch.stack(out)

    @torch.no_grad()
    def yes_probability(self, images: Sequence[Image.Image], questions: Sequence[str]) -> torch.Tensor:
        """``[N]`` float64: ``p(yes) / (p(yes) + p(no))`` for ``(images[i], questions[i])``."""
        if len(images) != len(questions):
            raise ValueError(f"got {len(images)} images for {len(questions)} questions")
        out = []
        for start in range(0, len(images), self.batch_size):
            out.append(self._batch(images[start:start + self.batch_size], questions[start:start + self.batch_size]))
        return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)

    def _batch(self, images: Sequence[Image.Image], questions: Sequence[str]) -> torch.Tensor:
        pixels = self.pixels(images).to(self.device)  # [b, 3, S, S]
        interpolate = self.image_size != self.model.config.vision_config.image_size
        image_states = self.model.vision_model(pixel_values=pixels, interpolate_pos_encoding=interpolate)[0]
        image_mask = torch.ones(image_states.shape[:-1], dtype=torch.long, device=self.device)  # [b, 1 + P]
        tok = self.tokenizer(list(questions), padding="longest", truncation=True,
                             max_length=self.max_question_tokens, return_tensors="pt").to(self.device)
        input_ids = tok["input_ids"].clone()  # [b, L]
        input_ids[:, 0] = self.enc_id
        question = self.model.text_encoder(input_ids=input_ids, attention_mask=tok["attention_mask"],
                                           encoder_hidden_states=image_states, encoder_attention_mask=image_mask)[0]
        # The decoder must not see the question's padding. transformers 5.23's BLIP text decoder ignores
        # ``encoder_attention_mask`` in its cross-attention (a masked and an unmasked call give the same logits), so
        # each question's states are cut to its own length instead: one cheap single-token step per question.
        bos = torch.full((1, 1), self.dec_id, dtype=torch.long, device=self.device)
        lengths = tok["attention_mask"].sum(dim=1).tolist()
        logits = torch.cat([
            self.model.text_decoder(input_ids=bos, encoder_hidden_states=question[i:i + 1, :n]).logits[:, 0]
            for i, n in enumerate(lengths)
        ])  # [b, V]
        margin = logits[:, self.yes_id].double() - logits[:, self.no_id].double()
        return torch.sigmoid(margin).cpu()
