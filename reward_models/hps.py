"""HPS v2 / v2.1 human-preference score as an :class:`~reward_models.base.OutcomeJudge` (t2i_r1.md §8.1).

HPS v2 is an open_clip ViT-H-14 fine-tuned on human preferences. Its score is the cosine of the normalised image
and text features (the diagonal of ``image_features @ text_features.T``), **without** the logit scale; typical
values are 0.2-0.35. Weights (``HPS_v2_compressed.pt`` or ``HPS_v2.1_compressed.pt``, a ``{"state_dict": ...}``
dict) come from a local path; nothing is downloaded.

Preprocessing follows the HPS v2 reference's evaluation transform, which resizes the longest side to 224 and pads
to a square (for the square images Show-o produces this equals a plain resize).
"""
from __future__ import annotations

from pathlib import Path

import torch

from reward_models.clip_score import ClipScore, load_open_clip

__all__ = ["HPS_ARCH", "HPSv2Scorer"]

HPS_ARCH = "ViT-H-14"


class HPSv2Scorer(ClipScore):
    """HPS v2 judge: ``score = cos(image, prompt)``, unscaled and unclipped (component ``cosine`` equals it)."""

    def __init__(self, model, preprocess, tokenizer, *, batch_size: int = 16, device: str | torch.device = "cpu"):
        super().__init__(
            model, preprocess, tokenizer, scale=1.0, clip_at_zero=False, batch_size=batch_size, device=device
        )

    @classmethod
    def from_checkpoint(
        cls, weights: str | Path, *, arch: str = HPS_ARCH, device: str | torch.device = "cpu", batch_size: int = 16
    ) -> HPSv2Scorer:
        """HPS v2 scorer from a local checkpoint file; ``arch`` stays ViT-H-14 for the released weights."""
        model, preprocess, tokenizer = load_open_clip(arch, weights, resize_mode="longest", device=device)
        return cls(model, preprocess, tokenizer, batch_size=batch_size, device=device)
