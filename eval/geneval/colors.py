"""GenEval's CLIP colour classifier (GenEval paper §3.2; reference §13).

Each object is shown to CLIP as the crop of its box from an image where every pixel outside its mask is painted gray
``#999``; CLIP ViT-L/14 (OpenAI weights, **QuickGELU**) classifies the crop zero-shot among 10 colours, each colour
embedded as the re-normalised mean of three normalised prompt embeddings.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision import transforms

from eval.geneval.judge import COLORS

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
# The official templates (reference §13.3): no a/an correction ("a photo of a orange car").
TEMPLATES: tuple[str, ...] = (
    "a photo of a {color} {cls}",
    "a photo of a {color}-colored {cls}",
    "a photo of a {color} object",
)
BACKGROUND = (153, 153, 153)  # "#999"


def clip_preprocess(image_size: int = 224) -> transforms.Compose:
    """open_clip's eval transform: bicubic resize of the short side, centre crop, tensor, OpenAI normalisation."""
    return transforms.Compose(
        [
            transforms.Resize(image_size, interpolation=transforms.InterpolationMode.BICUBIC),
            transforms.CenterCrop(image_size),
            transforms.Lambda(lambda im: im.convert("RGB")),
            transforms.ToTensor(),
            transforms.Normalize(OPENAI_MEAN, OPENAI_STD),
        ]
    )


def object_crop(
    image: Image.Image, box: np.ndarray, mask: np.ndarray | None, background=BACKGROUND, crop: bool = True
) -> Image.Image:
    """The official colour crop of one object: mask composited over ``background``, then cropped to ``box[:4]``.

    ``image`` RGB PIL image (W x H); ``box`` ``[x1, y1, x2, y2, ...]``; ``mask`` bool [H, W] (None keeps the whole
    image); ``background`` an RGB triple or ``"original"`` (keep the background). Box coordinates are rounded as PIL
    rounds them, and passed as Python ints (Pillow >= 13 rejects a numpy box).
    """
    image = image.convert("RGB")
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != (image.height, image.width):
            size = (image.height, image.width)
            raise ValueError(f"mask shape {mask.shape} does not match the image's (H, W) = {size}")
        blank = image.copy() if background == "original" else Image.new("RGB", image.size, tuple(background))
        image = Image.composite(image, blank, Image.fromarray(mask))
    if crop:
        image = image.crop(tuple(int(round(float(v))) for v in box[:4]))
    return image


def assert_quick_gelu(model: torch.nn.Module) -> None:
    """Fail loudly if ``model`` uses standard GELU: OpenAI CLIP weights need QuickGELU (reference §17.2 trap 1)."""
    from open_clip.transformer import QuickGELU

    quick = sum(isinstance(m, QuickGELU) for m in model.modules())
    gelu = [name for name, m in model.named_modules() if isinstance(m, torch.nn.GELU)]
    if gelu or not quick:
        raise ValueError(
            f"colour CLIP model must use QuickGELU (OpenAI weights); found {len(gelu)} nn.GELU modules "
            f"(e.g. {gelu[:2]}) and {quick} QuickGELU. Build 'ViT-L-14-quickgelu', not 'ViT-L-14'."
        )


class ClipColorClassifier:
    """``ColorClassifier`` with an open_clip model: batched crops, one cached text classifier per object class.

    ``model`` an open_clip ``CLIP`` (``encode_image`` / ``encode_text``), ``tokenizer`` its tokenizer. Runs in
    ``dtype`` on ``device``; ``autocast`` reproduces the official CUDA fp16 autocast instead.
    ``require_quick_gelu=False`` is only for CLIP weights trained with standard GELU (not GenEval's OpenAI model).
    """

    colors: Sequence[str] = COLORS

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer,
        image_size: int = 224,
        batch_size: int = 16,
        device: str | torch.device = "cpu",
        dtype: torch.dtype | str = torch.float32,
        autocast: bool = False,
        bgcolor: str = "#999",
        crop: bool = True,
        require_quick_gelu: bool = True,
    ):
        if require_quick_gelu:
            assert_quick_gelu(model)
        self.device = torch.device(device)
        self.dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype  # "float16" from a YAML config
        self.model = model.to(self.device, self.dtype).eval()
        self.tokenizer = tokenizer
        self.preprocess = clip_preprocess(image_size)
        self.batch_size = batch_size
        self.autocast = autocast
        self.background = "original" if bgcolor == "original" else Image.new("RGB", (1, 1), bgcolor).getpixel((0, 0))
        self.crop = crop
        self._text_cache: dict[str, torch.Tensor] = {}

    @classmethod
    def from_pretrained(
        cls, checkpoint: str | os.PathLike, model_name: str = "ViT-L-14-quickgelu", **kwargs
    ) -> "ClipColorClassifier":
        """Build ``model_name`` and load weights from a local file (``.safetensors`` or a torch state dict).

        The OpenAI ViT-L/14 weights in open_clip format are e.g. ``open_clip_model.safetensors`` of the Hugging Face
        repository ``timm/vit_large_patch14_clip_224.openai``. Nothing is ever downloaded. ``model_name`` may also be
        an open_clip model config JSON file (registered under its file stem), e.g. a rehearsal's tiny stand-in.
        """
        import open_clip

        if model_name.endswith(".json"):
            config = Path(model_name).expanduser()
            if not config.is_file():
                raise FileNotFoundError(f"open_clip model config not found: {config}")
            open_clip.add_model_config(config)
            model_name = config.stem
        path = Path(checkpoint).expanduser()
        if not path.is_file():
            raise FileNotFoundError(
                f"CLIP checkpoint not found: {path} (OpenAI ViT-L/14 weights for open_clip, e.g. "
                "open_clip_model.safetensors from timm/vit_large_patch14_clip_224.openai)"
            )
        model = open_clip.create_model(model_name, pretrained=None, load_weights=False)
        open_clip.load_checkpoint(model, str(path), strict=True, weights_only=True)
        return cls(model, open_clip.get_tokenizer(model_name), **kwargs)

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=torch.float16, enabled=self.autocast)

    @torch.no_grad()
    def text_classifier(self, class_name: str) -> torch.Tensor:
        """[D, 10] zero-shot weights for objects of ``class_name``: per colour the normalised mean of 3 templates."""
        if class_name not in self._text_cache:
            columns = []
            for color in COLORS:
                texts = [t.format(color=color, cls=class_name) for t in TEMPLATES]
                with self._autocast():
                    emb = self.model.encode_text(self.tokenizer(texts).to(self.device))  # [3, D]
                mean = F.normalize(emb.float(), dim=-1).mean(dim=0)
                columns.append(mean / mean.norm())
            self._text_cache[class_name] = torch.stack(columns, dim=1)  # [D, 10]
        return self._text_cache[class_name]

    @torch.no_grad()
    def logits(self, pixels: torch.Tensor, class_name: str) -> torch.Tensor:
        """[n, 10] colour logits (``100 · cos``) for preprocessed crops ``pixels`` [n, 3, S, S]."""
        classifier = self.text_classifier(class_name)
        out = []
        for start in range(0, len(pixels), self.batch_size):
            batch = pixels[start : start + self.batch_size].to(self.device, self.dtype)
            with self._autocast():
                feats = self.model.encode_image(batch)
            out.append(100.0 * F.normalize(feats.float(), dim=-1) @ classifier.float())
        return torch.cat(out)

    def classify(self, image: Image.Image, boxes: np.ndarray, masks: np.ndarray, class_name: str) -> list[str]:
        """Colour name of each detection (``boxes`` [n, 5], ``masks`` bool [n, H, W]) of ``class_name``."""
        if len(boxes) == 0:
            return []
        image = image.convert("RGB")
        crops = [object_crop(image, b, m, self.background, self.crop) for b, m in zip(boxes, masks)]
        pixels = torch.stack([self.preprocess(c) for c in crops])
        return [COLORS[i] for i in self.logits(pixels, class_name).argmax(dim=-1).tolist()]
