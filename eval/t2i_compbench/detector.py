"""The object detector of the spatial and numeracy scores: an open-vocabulary detector through transformers.

The official evaluator runs UniDet (cascade R-CNN over a 722-class unified label space, detectron2) at threshold 0.5
and matches object words to its class names exactly (reference §3). UniDet has no transformers port, so this harness
queries an open-vocabulary detector — OWL-ViT / OWLv2 (``AutoModelForZeroShotObjectDetection``) — with the prompt's
object words. Boxes come back in image pixels and are scaled into the official ~479-px detector frame before the
geometric rules, so the 150-px distance threshold means what it means officially. Effects (docs/benchmarks.md):
every object word can be found (officially ~106 of 600 spatial mentions never match a class and score 0), and
OWL confidences are lower than UniDet's, which lowers the 0.25·s terms of the spatial score.
"""
from __future__ import annotations

from pathlib import Path
from typing import Protocol, Sequence

import torch
from PIL import Image

from eval.t2i_compbench.rules import Detection

__all__ = ["ObjectDetector", "OwlDetector"]


class ObjectDetector(Protocol):
    def detect(self, images: Sequence[Image.Image], queries: Sequence[Sequence[str]]) -> list[list[Detection]]:
        """Per image, detections of its ``queries`` (labels are query strings), score-sorted, boxes in pixels."""
        ...


class OwlDetector:
    """OWL-ViT / OWLv2 queried with each image's object words.

    Args:
        model: ``OwlViTForObjectDetection`` / ``Owlv2ForObjectDetection``.
        processor: the matching processor (image processor + CLIP tokenizer).
        threshold: minimum confidence kept (UniDet's 0.5 is not comparable with OWL's sigmoid scores).
        vocabulary: optional closed label set (e.g. UniDet's 722 names): a query outside it is never detected,
            reproducing the official exact-match misses.
    """

    def __init__(self, model, processor, *, threshold: float = 0.1, vocabulary: Sequence[str] | None = None,
                 device: str | torch.device = "cpu"):
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.processor = processor
        self.threshold = threshold
        self.vocabulary = None if vocabulary is None else frozenset(vocabulary)

    @classmethod
    def from_pretrained(cls, path: str | Path, vocabulary_file: str | Path | None = None, **kwargs) -> OwlDetector:
        """Load a local HF OWL-ViT / OWLv2 directory; ``vocabulary_file``: one class name per line (optional)."""
        from transformers import AutoModelForZeroShotObjectDetection, AutoProcessor

        path = Path(path)
        if not path.is_dir():
            raise FileNotFoundError(f"detector directory not found: {path} (local paths only; nothing is downloaded)")
        vocabulary = None
        if vocabulary_file is not None:
            vocabulary = [line.strip() for line in Path(vocabulary_file).read_text().splitlines() if line.strip()]
        return cls(AutoModelForZeroShotObjectDetection.from_pretrained(path), AutoProcessor.from_pretrained(path),
                   vocabulary=vocabulary, **kwargs)

    @torch.no_grad()
    def detect(self, images: Sequence[Image.Image], queries: Sequence[Sequence[str]]) -> list[list[Detection]]:
        if len(images) != len(queries):
            raise ValueError(f"got {len(images)} images for {len(queries)} query lists")
        out = []
        for image, names in zip(images, queries):
            names = [n for n in dict.fromkeys(names) if self.vocabulary is None or n in self.vocabulary]
            out.append(self._detect_one(image, names) if names else [])
        return out

    def _detect_one(self, image: Image.Image, names: list[str]) -> list[Detection]:
        # One image per forward pass: every image has its own queries, and padded query slots would need care.
        inputs = self.processor(text=[names], images=[image], padding=True, truncation=True,
                                return_tensors="pt").to(self.device)
        outputs = self.model(**inputs)
        w, h = image.size
        result = self.processor.post_process_grounded_object_detection(
            outputs, threshold=self.threshold, target_sizes=[(h, w)], text_labels=[names])[0]
        dets = [
            Detection(names[int(label)], float(score), tuple(float(v) for v in box.tolist()))
            for box, score, label in zip(result["boxes"], result["scores"], result["labels"])
        ]
        return sorted(dets, key=lambda d: -d.score)
