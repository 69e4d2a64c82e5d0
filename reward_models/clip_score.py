"""CLIP similarity as an :class:`~reward_models.base.OutcomeJudge` (any open_clip architecture, local weights).

Score of a (prompt, image) pair, with ``cos`` the cosine of the L2-normalised image and text embeddings:

    score = scale * max(cos, 0)     if clip_at_zero
    score = scale * cos             otherwise

Defaults give the standard **CLIPScore** of Hessel et al. (2021), ``2.5 * max(cos, 0)``; ``scale=100`` gives the
"cosine x 100 clipped at 0" variant (torchmetrics' ``CLIPScore``). The model's learned ``logit_scale`` is never
used, so scores are comparable across checkpoints. HPS v2 (:mod:`reward_models.hps`) is this scorer with
``scale=1``, no clipping and HPS weights.

Every image is embedded independently (no batch statistics), so scores do not depend on the batch size.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import open_clip
import torch
import torch.nn.functional as F
from PIL import Image

from reward_models.base import JudgeCost, JudgeOutput, validate_judge_inputs

__all__ = ["ClipScore", "load_open_clip"]


def load_open_clip(
    arch: str, weights: str | Path, *, resize_mode: str | None = None, device: str | torch.device = "cpu"
) -> tuple[torch.nn.Module, Callable, Callable]:
    """Build open_clip ``arch`` without downloading anything and load ``weights`` (a local file) strictly.

    ``weights`` may be an open_clip ``.bin``/``.pt``/``.safetensors`` state dict, optionally wrapped in
    ``{"state_dict": ...}`` with ``module.`` prefixes (as HPS v2 checkpoints are); ``.pt``/``.bin`` are read with
    ``weights_only=True``. Returns ``(model, preprocess, tokenizer)``.
    """
    path = Path(weights)
    if not path.is_file():
        raise FileNotFoundError(f"open_clip weights not found: {path} (download them first; nothing is fetched)")
    if arch not in open_clip.list_models():
        raise ValueError(f"unknown open_clip architecture {arch!r}; see open_clip.list_models()")
    # ``pretrained=None`` builds a randomly initialised model; the checkpoint is loaded below, from disk only.
    model, _, preprocess = open_clip.create_model_and_transforms(
        arch, pretrained=None, device=device, image_resize_mode=resize_mode
    )
    open_clip.load_checkpoint(model, str(path), strict=True, weights_only=True, device="cpu")
    return model.eval(), preprocess, open_clip.get_tokenizer(arch)


class ClipScore:
    """CLIP image-text similarity judge (see the module docstring for the formula).

    Args:
        model: an open_clip ``CLIP``-like module with ``encode_image`` / ``encode_text``.
        preprocess: PIL image -> ``[3, H, W]`` tensor (open_clip's eval transform).
        tokenizer: list of strings -> ``[B, L]`` token ids.
        scale: multiplier of the cosine (2.5 = CLIPScore's ``w``).
        clip_at_zero: clamp negative cosines to 0 before scaling.
        batch_size: images embedded per forward pass (memory only; results do not depend on it).
        device: where the model runs.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        preprocess: Callable[[Image.Image], torch.Tensor],
        tokenizer: Callable[[list[str]], torch.Tensor],
        *,
        scale: float = 2.5,
        clip_at_zero: bool = True,
        batch_size: int = 16,
        device: str | torch.device = "cpu",
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model = model.to(device).eval()
        self.preprocess = preprocess
        self.tokenizer = tokenizer
        self.scale = float(scale)
        self.clip_at_zero = clip_at_zero
        self.batch_size = batch_size
        self.device = torch.device(device)

    @classmethod
    def from_checkpoint(
        cls, arch: str, weights: str | Path, *, device: str | torch.device = "cpu", **kwargs
    ) -> ClipScore:
        """Scorer for open_clip ``arch`` (e.g. ``"ViT-L-14"``) with local ``weights``; ``kwargs`` go to ``__init__``."""
        model, preprocess, tokenizer = load_open_clip(arch, weights, device=device)
        return cls(model, preprocess, tokenizer, device=device, **kwargs)

    @torch.no_grad()
    def cosine(self, prompts: Sequence[str], images: Sequence[Image.Image]) -> torch.Tensor:
        """``[B]`` cosine between ``images[i]`` and ``prompts[i]`` (float32, CPU)."""
        out = []
        for start in range(0, len(prompts), self.batch_size):
            chunk_images = images[start : start + self.batch_size]
            pixels = torch.stack([self.preprocess(image) for image in chunk_images]).to(self.device)  # [b, 3, H, W]
            tokens = self.tokenizer(list(prompts[start : start + self.batch_size])).to(self.device)  # [b, L]
            image_emb = F.normalize(self.model.encode_image(pixels).float(), dim=-1)  # [b, D]
            text_emb = F.normalize(self.model.encode_text(tokens).float(), dim=-1)  # [b, D]
            out.append((image_emb * text_emb).sum(dim=-1).cpu())
        return torch.cat(out)

    def score(self, prompts: Sequence[str], images: Sequence[Image.Image]) -> JudgeOutput:
        """Returns ``scores`` ``[B]`` and the raw ``cosine`` component ``[B]``."""
        validate_judge_inputs(prompts, images)
        cos = self.cosine(prompts, images)
        scores = self.scale * (cos.clamp(min=0.0) if self.clip_at_zero else cos)
        n = len(prompts)
        return JudgeOutput(
            scores=scores,
            components={"cosine": cos},
            cost=JudgeCost(forward_passes=n, images_scored=n),
        )
