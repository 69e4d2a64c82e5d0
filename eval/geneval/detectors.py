"""GenEval detectors implementing the :class:`eval.geneval.types.Detector` protocol.

* :class:`Mask2FormerDetector` — the pure-PyTorch port (:mod:`eval.geneval.mask2former`): mmdetection pre-processing
  → model → mmdetection post-processing → per-class detections in mmdetection 2.x's layout. No mmcv / mmdet.
* :class:`MMDetDetector` — the official mmdetection model, only where the optional ``imagecot[mmdet]`` extra (mmdet
  and an mmcv with compiled ops) is installed; useful to cross-check the port on real images.
"""
from __future__ import annotations

import importlib
import os
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from eval.geneval.m2f_processing import (ImageMeta, Instances, group_by_class, postprocess, preprocess_mmdet2,
                                         preprocess_mmdet3)
from eval.geneval.mask2former import Mask2FormerConfig, load_mask2former
from eval.geneval.prompts import COCO_CLASSES
from eval.geneval.types import ClassDetections, ImageDetections

# GenEval's ``object_names.txt``: the 80 COCO thing classes in mmdetection label order, with GenEval's names.
GENEVAL_CLASS_NAMES: tuple[str, ...] = tuple(COCO_CLASSES)  # label i = line i of GenEval's object_names.txt

PREPROCESSORS: dict[str, Callable[[Image.Image, torch.dtype], tuple[torch.Tensor, ImageMeta]]] = {
    "mmdet2": preprocess_mmdet2,  # GenEval's (mmdetection 2.x test pipeline)
    "mmdet3": preprocess_mmdet3,
}
_DTYPES = {"float32": torch.float32, "float64": torch.float64}


class Mask2FormerDetector:
    """GenEval's Mask2Former detector in pure PyTorch.

    Args:
        checkpoint: ``.pth`` (mmdetection 2.x or 3.x, optionally under ``state_dict``) or ``.safetensors`` weights.
        config: architecture; the official Swin-S widths by default, or a config JSON file
            (:meth:`~eval.geneval.mask2former.Mask2FormerConfig.from_json`, e.g. a rehearsal's tiny stand-in).
        preprocessing: ``"mmdet2"`` (GenEval's pipeline) or ``"mmdet3"``.
        dtype: ``"float32"`` (what GenEval runs) or ``"float64"`` (for parity checks).
        batch_size: images per forward pass. Only images with the same padded input size share a batch, so the
            padding is that of a single-image call. The default 1 reproduces mmdetection's per-image inference bit
            for bit in float32; larger batches change float32 rounding in the last bits (scores ~1e-6), which the
            decoder's ``sigmoid < 0.5`` attention mask can amplify into a flipped mask pixel. float64 is unaffected
            at any tolerance that matters.
    """

    def __init__(
        self,
        checkpoint: str | os.PathLike,
        config: Mask2FormerConfig | str | os.PathLike | None = None,
        class_names: Sequence[str] = GENEVAL_CLASS_NAMES,
        preprocessing: str = "mmdet2",
        dtype: str = "float32",
        device: str = "cpu",
        batch_size: int = 1,
        key_format: str = "auto",
        progress: bool = False,
    ):
        if preprocessing not in PREPROCESSORS:
            raise ValueError(f"preprocessing must be one of {sorted(PREPROCESSORS)}, got {preprocessing!r}")
        if dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if isinstance(config, (str, os.PathLike)):
            config = Mask2FormerConfig.from_json(config)
        config = config or Mask2FormerConfig()
        if len(class_names) != config.num_classes:
            raise ValueError(f"{len(class_names)} class names for a model with {config.num_classes} classes")
        self.class_names = tuple(class_names)
        self.config = config
        self.preprocess = PREPROCESSORS[preprocessing]
        self.dtype = _DTYPES[dtype]
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.progress = progress
        self.model = load_mask2former(checkpoint, config, key_format, self.dtype).to(self.device)

    @torch.inference_mode()
    def instances(self, images: Sequence[Image.Image]) -> list[Instances]:
        """The 100 raw instances per image (mmdetection's ``pred_instances``), in input order, on the CPU."""
        prepared = [self.preprocess(im, self.dtype) for im in images]
        by_shape: dict[tuple[int, int], list[int]] = {}
        for i, (_, meta) in enumerate(prepared):
            by_shape.setdefault(meta.pad_shape, []).append(i)
        batches = [idx[s:s + self.batch_size] for idx in by_shape.values() for s in range(0, len(idx), self.batch_size)]
        out: list[Instances | None] = [None] * len(images)
        for batch in tqdm(batches, desc="mask2former", disable=not self.progress):
            x = torch.stack([prepared[i][0] for i in batch]).to(self.device, self.dtype)
            pred = self.model(x, last_only=True)
            for j, i in enumerate(batch):
                inst = postprocess(pred.cls_logits[-1][j], pred.mask_logits[-1][j], prepared[i][1],
                                   tuple(x.shape[-2:]), self.config.max_per_image)
                out[i] = Instances(**{name: t.cpu() for name, t in vars(inst).items()})
        return out

    def detect(self, images: Sequence[Image.Image]) -> list[ImageDetections]:
        """Per-class detections of each image (mmdetection 2.x layout, original-image pixels)."""
        return [group_by_class(inst, im.size) for inst, im in zip(self.instances(images), images)]


_MMDET_HELP = (
    "MMDetDetector needs mmdetection 2.x and mmcv-full 1.7.x with compiled ops (the optional 'imagecot[mmdet]' extra); "
    "see docs/geneval_detector.md. The pure-PyTorch Mask2FormerDetector needs neither."
)


def _import_mmdet():
    try:
        apis = importlib.import_module("mmdet.apis")
        importlib.import_module("mmcv._ext")  # the compiled ops; missing → mmdet fails later or silently (trap #3)
    except ImportError as err:
        raise ImportError(f"{_MMDET_HELP} ({err})") from err
    return apis


class MMDetDetector:
    """The official mmdetection model (GenEval's own code path), behind the same protocol.

    Images are handed to mmdetection as BGR arrays (mmdetection assumes numpy input is BGR; passing RGB is trap #5).
    mmdetection 2.x returns ``(bbox_results, mask_results)`` per image; 3.x returns ``pred_instances``, regrouped here.
    """

    def __init__(self, config_file: str | os.PathLike, checkpoint: str | os.PathLike,
                 class_names: Sequence[str] = GENEVAL_CLASS_NAMES, device: str = "cuda", progress: bool = False):
        apis = _import_mmdet()
        for path in (config_file, checkpoint):
            if not os.path.isfile(path):
                raise FileNotFoundError(f"MMDetDetector: file not found: {path}")
        self.class_names = tuple(class_names)
        self.progress = progress
        self._inference = apis.inference_detector
        self.model = apis.init_detector(str(config_file), str(checkpoint), device=device)

    def detect(self, images: Sequence[Image.Image]) -> list[ImageDetections]:
        results = []
        for image in tqdm(images, desc="mmdet", disable=not self.progress):
            bgr = np.ascontiguousarray(np.asarray(image.convert("RGB"))[:, :, ::-1])
            results.append(self._to_detections(self._inference(self.model, bgr), image.size))
        return results

    def _to_detections(self, result, image_size: tuple[int, int]) -> ImageDetections:
        if isinstance(result, dict):  # mmdetection 2.x with panoptic/semantic outputs enabled
            result = result["ins_results"]
        if isinstance(result, tuple):  # mmdetection 2.x: per-class lists
            bbox_results, mask_results = result
            by_label = {}
            for k, (boxes, masks) in enumerate(zip(bbox_results, mask_results)):
                if len(boxes):
                    by_label[k] = ClassDetections(np.asarray(boxes), np.stack([np.asarray(m) for m in masks]))
            return ImageDetections(image_size, by_label)
        pred = result.pred_instances.cpu()  # mmdetection 3.x; query index / class probability are not exposed
        unknown = torch.full_like(pred.labels, -1)
        inst = Instances(pred.scores, pred.labels, pred.bboxes.float(), pred.masks.bool(), unknown,
                         torch.full_like(pred.scores, float("nan")))
        return group_by_class(inst, image_size)
