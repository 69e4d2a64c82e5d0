"""Data types shared by GenEval detectors and the judge.

A detector returns, for each image, its detections **per class** in mmdetection 2.x's layout, which is what the
official GenEval evaluator consumes: for COCO label ``k`` a float32 array ``bboxes[k]`` of shape ``[n, 5]``
(``x1, y1, x2, y2, score``; pixels of the original image, ``x2``/``y2`` exclusive) and a boolean array
``masks[k]`` of shape ``[n, H, W]``. Row order is the detector's own (not sorted by score); the judge sorts.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Sequence, runtime_checkable

import numpy as np
from PIL import Image


@dataclass
class ClassDetections:
    bboxes: np.ndarray  # float32 [n, 5]
    masks: np.ndarray  # bool [n, H, W]

    def __post_init__(self) -> None:
        self.bboxes = np.asarray(self.bboxes, dtype=np.float32).reshape(-1, 5)
        self.masks = np.asarray(self.masks, dtype=bool)
        if self.masks.ndim != 3 or self.masks.shape[0] != self.bboxes.shape[0]:
            raise ValueError(
                f"masks must be [n, H, W] with n = {self.bboxes.shape[0]} boxes, got shape {self.masks.shape}"
            )


@dataclass
class ImageDetections:
    """All detections of one image: ``by_label[k]`` for COCO label index ``k`` (absent = no detection)."""

    image_size: tuple[int, int]  # (W, H)
    by_label: dict[int, ClassDetections] = field(default_factory=dict)

    def get(self, label: int) -> ClassDetections:
        if label in self.by_label:
            return self.by_label[label]
        w, h = self.image_size
        return ClassDetections(np.zeros((0, 5), np.float32), np.zeros((0, h, w), bool))


@runtime_checkable
class Detector(Protocol):
    """Anything that turns images into per-class detections (Mask2Former port, mmdet backend, shapes detector)."""

    class_names: Sequence[str]

    def detect(self, images: Sequence[Image.Image]) -> list[ImageDetections]:
        ...


@runtime_checkable
class ColorClassifier(Protocol):
    """Names the colour of some detections of one class in one image (GenEval's CLIP classifier, or an exact one).

    ``boxes`` float32 ``[n, 5]`` and ``masks`` bool ``[n, H, W]`` are the detections to classify (in the order the
    official evaluator asks for them); returns one colour name per detection.
    """

    colors: Sequence[str]

    def classify(self, image: Image.Image, boxes: np.ndarray, masks: np.ndarray, class_name: str) -> list[str]:
        ...
