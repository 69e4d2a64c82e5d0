"""Pre- and post-processing of GenEval's Mask2Former detector, exactly as mmdetection does them.

Pre-processing (GenEval §7 of ``reference/geneval.md``): keep-ratio rescale to fit (1333, 800) with OpenCV's bilinear
``INTER_LINEAR`` (re-implemented here bit for bit: OpenCV's fixed-point code for uint8, IPP's float arithmetic for
float32, so OpenCV is not needed), bottom/right padding to a
multiple of 32, mean/std normalisation. Two variants: mmdetection 2.x's test pipeline (what GenEval runs: resize the
uint8 image, pad with 128, then normalise) and mmdetection 3.x's ``inference_detector`` (resize in float32, normalise,
pad with 0). Both compute sizes with mmcv's ``rescale_size`` (the same code in mmcv-full 1.7 and mmcv 2.1).

Post-processing (GenEval §8; mmdetection ``MaskFormerFusionHead.instance_postprocess``): last decoder prediction,
bilinear upsampling of the mask *logits* to the padded input, crop, bilinear resize to the original size; top-100 over
(query, class) softmax probabilities; binary mask ``logit > 0``; score = class probability × mean sigmoid inside the
mask; box = tight box of the mask. Then per-class grouping in mmdetection 2.x's output layout.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from eval.geneval.types import ClassDetections, ImageDetections

MEAN_RGB = (123.675, 116.28, 103.53)
STD_RGB = (58.395, 57.12, 57.375)
SCALE = (1333, 800)
SIZE_DIVISOR = 32
_COEF_SCALE = 2048  # OpenCV's INTER_RESIZE_COEF_SCALE (11 fractional bits)


@dataclass(frozen=True)
class ImageMeta:
    """mmdetection's image metadata; shapes are (H, W).

    ``scale_factor`` is (new_w / w, new_h / h) in float64, as mmdetection 3.x stores it; 2.x stores the same ratios as a
    float32 array (w, h, w, h) and ``img_shape`` with the channel count. Neither version's Mask2Former reads it.
    """

    ori_shape: tuple[int, int]
    img_shape: tuple[int, int]  # after the resize, before padding
    pad_shape: tuple[int, int]  # = batch_input_shape for a single image
    scale_factor: tuple[float, float]  # (new_w / w, new_h / h)


def rescale_size(w: int, h: int, scale: tuple[int, int] = SCALE) -> tuple[int, int]:
    """``mmcv.rescale_size`` (keep ratio): the largest size fitting (long, short) ``scale``; returns (new_w, new_h)."""
    factor = min(max(scale) / max(h, w), min(scale) / min(h, w))
    return int(w * factor + 0.5), int(h * factor + 0.5)


def image_meta(w: int, h: int) -> ImageMeta:
    new_w, new_h = rescale_size(w, h)
    pad = (-(-new_h // SIZE_DIVISOR) * SIZE_DIVISOR, -(-new_w // SIZE_DIVISOR) * SIZE_DIVISOR)
    return ImageMeta((h, w), (new_h, new_w), pad, (new_w / w, new_h / h))


def _taps_u8(dst: int, src: int, clamp_weights: bool):
    """OpenCV's source indices and 11-bit weights of one axis for uint8 images.

    OpenCV computes the fractional position in float32 and resets the weight at the borders for x
    (``clamp_weights``) but only clamps the row index for y; the two give different first/last rows, so both are
    reproduced.
    """
    # OpenCV inverts the inverse scale (dst / src), which is not always exactly src / dst
    f = ((np.arange(dst) + 0.5) * (1.0 / (dst / src)) - 0.5).astype(np.float32)
    i0 = np.floor(f).astype(np.int64)
    f = (f - i0.astype(np.float32)).astype(np.float32)
    if clamp_weights:
        f[(i0 < 0) | (i0 >= src - 1)] = 0
        i0 = np.clip(i0, 0, src - 1)
    w0 = np.rint((np.float32(1) - f) * np.float32(_COEF_SCALE)).astype(np.int64)
    w1 = np.rint(f * np.float32(_COEF_SCALE)).astype(np.int64)
    return np.clip(i0, 0, src - 1), np.clip(i0 + 1, 0, src - 1), w0, w1


def resize_bilinear_u8(img: np.ndarray, new_w: int, new_h: int) -> np.ndarray:
    """``cv2.resize(img, (new_w, new_h), interpolation=cv2.INTER_LINEAR)`` for uint8 ``[H, W, C]``, bit-exact.

    OpenCV works in fixed point: 11-bit weights, an exact int32 horizontal pass, and a vectorised vertical pass
    that drops 4 bits, keeps the high 16 bits of each product and rounds the sum by 2 bits. Checked equal to
    OpenCV 5.0 on every pixel of the fixture images (up- and down-scaling).
    """
    h, w = img.shape[:2]
    if (new_w, new_h) == (w, h):
        return img.copy()
    x0, x1, a0, a1 = _taps_u8(new_w, w, clamp_weights=True)
    y0, y1, b0, b1 = _taps_u8(new_h, h, clamp_weights=False)
    src = img.astype(np.int64).reshape(h, w, -1)
    rows = src[:, x0] * a0[None, :, None] + src[:, x1] * a1[None, :, None]  # [h, new_w, C], scale 2^11
    top = ((rows[y0] >> 4) * b0[:, None, None]) >> 16
    bottom = ((rows[y1] >> 4) * b1[:, None, None]) >> 16
    out = np.clip((top + bottom + 2) >> 2, 0, 255).astype(np.uint8)
    return out.reshape(new_h, new_w, *img.shape[2:])


def _taps_f32(dst: int, src: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices and float32 fractions of one axis for float32 images (IPP's linear resize).

    The position ``(d + 0.5) * (src / dst) - 0.5`` stays in float64 (the uint8 path rounds it to float32 and scales by
    ``1 / (dst / src)``, which rounds differently); only the fraction is rounded to float32. Positions left of the first
    or right of the last source pixel take that pixel (fraction 0).
    """
    pos = (np.arange(dst) + 0.5) * (src / dst) - 0.5
    i0 = np.floor(pos).astype(np.int64)
    frac = np.where((i0 < 0) | (i0 >= src - 1), 0.0, pos - i0).astype(np.float32)
    return np.clip(i0, 0, src - 1), np.clip(i0 + 1, 0, src - 1), frac


def fma_f32(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """float32 ``a * b + c`` rounded once (a fused multiply-add), for float32 arrays of any broadcastable shapes.

    ``a * b`` is exact in float64 (24 + 24 significant bits); the float64 sum is made round-to-odd from its exact error
    (TwoSum), after which rounding to float32 equals rounding the exact value once (53 >= 24 + 2 bits).
    """
    p = a.astype(np.float64) * b.astype(np.float64)
    c = np.asarray(c, np.float64)
    s = p + c
    bv = s - p
    err = (p - (s - bv)) + (c - bv)
    inexact_even = (err != 0) & ((s.view(np.int64) & 1) == 0)
    s = np.where(inexact_even, np.nextafter(s, np.where(err > 0, np.inf, -np.inf)), s)
    return s.astype(np.float32)


def resize_bilinear_f32(img: np.ndarray, new_w: int, new_h: int) -> np.ndarray:
    """``cv2.resize(img, (new_w, new_h), interpolation=cv2.INTER_LINEAR)`` on float32 ``[H, W, C]`` (mmdetection 3.x
    path), as OpenCV's x86 wheels compute it: through Intel IPP, horizontal pass then vertical pass, each
    ``a + t * (b - a)`` with one fused multiply-add in float32.

    Checked bit for bit against OpenCV 5.0.0 (pip wheel, IPP 2026.0, AVX-512 code) on every pixel of the fixture
    images and of 3-channel images of 44 sizes (640x480 and 480x640 among them) resized to fit (1333, 800). Two sizes
    differed by 1 ulp: a 1x1 source (OpenCV does not call IPP for it) and a >10x upscale (IPP computes the last
    border columns in scalar code without FMA), at pixels of those border columns only. OpenCV's float32 resize is not the same on every machine: IPP's AVX2 code
    differs in the last bit at a few pixels, its SSE4.2 code (no FMA) by up to 3 ulp at many, and OpenCV without IPP
    (its own two-weight loop from float32 positions) by up to ~0.008 of 255.
    """
    h, w = img.shape[:2]
    if (new_w, new_h) == (w, h):
        return img.astype(np.float32, copy=True)
    x0, x1, tx = _taps_f32(new_w, w)
    y0, y1, ty = _taps_f32(new_h, h)
    src = img.astype(np.float32).reshape(h, w, -1)
    left, right = src[:, x0], src[:, x1]
    rows = fma_f32(tx[None, :, None], right - left, left)  # [h, new_w, C]
    top, bottom = rows[y0], rows[y1]
    out = fma_f32(ty[:, None, None], bottom - top, top)
    return out.reshape(new_h, new_w, *img.shape[2:])


def _rgb_array(image: Image.Image) -> np.ndarray:
    """uint8 RGB ``[H, W, 3]``; alpha is dropped, not composited, as OpenCV's ``IMREAD_COLOR`` does."""
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def normalize(rgb: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``(x - mean) / std`` per RGB channel in ``dtype``; ``rgb`` ``[H, W, 3]`` → ``[3, H, W]``.

    mean / std are float32 constants (widened for float64), as in mmdetection's ``DetDataPreprocessor`` buffers.
    """
    mean, std = torch.tensor(MEAN_RGB).to(dtype), torch.tensor(STD_RGB).to(dtype)
    return ((rgb.to(dtype) - mean) / std).permute(2, 0, 1).contiguous()


def preprocess_mmdet2(image: Image.Image, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, ImageMeta]:
    """GenEval's pipeline (mmdetection 2.x): uint8 resize, pad with 128, normalise in float32 → ``[3, Hp, Wp]``
    (widened to ``dtype``: the pipeline is float32 whatever the model's dtype).

    Normalising the padded uint8 image gives exactly the fixture's lookup table (float32 ``(v - mean) / std``).
    """
    rgb = _rgb_array(image)
    meta = image_meta(rgb.shape[1], rgb.shape[0])
    (new_h, new_w), (pad_h, pad_w) = meta.img_shape, meta.pad_shape
    canvas = np.full((pad_h, pad_w, 3), 128, np.uint8)
    canvas[:new_h, :new_w] = resize_bilinear_u8(rgb, new_w, new_h)
    return normalize(torch.from_numpy(canvas)).to(dtype), meta


def resized_u8(image: Image.Image) -> np.ndarray:
    """The resized and padded uint8 RGB canvas of the mmdetection 2.x pipeline (what the fixture stores as PNG)."""
    rgb = _rgb_array(image)
    meta = image_meta(rgb.shape[1], rgb.shape[0])
    canvas = np.full((*meta.pad_shape, 3), 128, np.uint8)
    canvas[: meta.img_shape[0], : meta.img_shape[1]] = resize_bilinear_u8(rgb, meta.img_shape[1], meta.img_shape[0])
    return canvas


def preprocess_mmdet3(image: Image.Image, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, ImageMeta]:
    """mmdetection 3.x ``inference_detector``: float32 resize, normalise in ``dtype`` (the model's), pad with 0
    → ``[3, Hp, Wp]``. A float64 model normalises the float32 resized image in float64 (README §6)."""
    rgb = _rgb_array(image).astype(np.float32)
    meta = image_meta(rgb.shape[1], rgb.shape[0])
    (new_h, new_w), (pad_h, pad_w) = meta.img_shape, meta.pad_shape
    x = normalize(torch.from_numpy(resize_bilinear_f32(rgb, new_w, new_h)), dtype)
    return F.pad(x, (0, pad_w - new_w, 0, pad_h - new_h)), meta


@dataclass
class Instances:
    """The ``max_per_image`` instances of one image, in ``torch.topk(sorted=False)`` order (mmdetection's order).

    scores ``[K]`` (model dtype), labels int64 ``[K]``, bboxes float32 ``[K, 4]`` (x1, y1, x2, y2; exclusive max),
    masks bool ``[K, H, W]`` at the original size, query_index int64 ``[K]``, class_prob ``[K]``.
    """

    scores: torch.Tensor
    labels: torch.Tensor
    bboxes: torch.Tensor
    masks: torch.Tensor
    query_index: torch.Tensor
    class_prob: torch.Tensor


def resize_mask_logits(mask_logits: torch.Tensor, meta: ImageMeta, batch_shape: tuple[int, int]) -> torch.Tensor:
    """``[Q, h, w]`` stride-4 logits → ``[Q, H, W]`` at the original size: upsample to the padded batch input,
    crop to ``img_shape``, resize to ``ori_shape`` (bilinear, ``align_corners=False``; logits, never binary masks)."""
    x = F.interpolate(mask_logits[None], size=batch_shape, mode="bilinear", align_corners=False)[0]
    x = x[:, : meta.img_shape[0], : meta.img_shape[1]]
    return F.interpolate(x[:, None], size=meta.ori_shape, mode="bilinear", align_corners=False)[:, 0]


def masks_to_boxes(masks: torch.Tensor) -> torch.Tensor:
    """Tight boxes of bool masks ``[K, H, W]``: float32 ``[K, 4]`` = (x_min, y_min, x_max + 1, y_max + 1); zeros
    for an empty mask (mmdetection ``mask2bbox``)."""
    k, h, w = masks.shape
    cols, rows = masks.any(dim=1), masks.any(dim=2)  # [K, W], [K, H]
    xs, ys = torch.arange(w, device=masks.device), torch.arange(h, device=masks.device)
    x0 = torch.where(cols, xs, w).amin(1)
    x1 = torch.where(cols, xs, -1).amax(1) + 1
    y0 = torch.where(rows, ys, h).amin(1)
    y1 = torch.where(rows, ys, -1).amax(1) + 1
    boxes = torch.stack([x0, y0, x1, y1], dim=1).to(torch.float32)
    return torch.where(cols.any(1, keepdim=True), boxes, torch.zeros_like(boxes))


def instance_postprocess(cls_logits: torch.Tensor, mask_logits_ori: torch.Tensor, max_per_image: int = 100):
    """mmdetection ``instance_postprocess``. cls_logits ``[Q, C + 1]``; mask_logits_ori ``[Q, H, W]``."""
    num_classes = cls_logits.shape[1] - 1
    probs = F.softmax(cls_logits, dim=-1)[:, :-1]
    class_prob, flat = probs.flatten().topk(max_per_image, sorted=False)
    labels, query = flat % num_classes, flat // num_classes
    logits = mask_logits_ori[query]
    # float32 even in a float64 model, as mmdetection's ``.float()``: the 1e-6 then vanishes for non-empty masks.
    binary = (logits > 0).float()
    mask_score = (logits.sigmoid() * binary).flatten(1).sum(1) / (binary.flatten(1).sum(1) + 1e-6)
    masks = binary.bool()
    return Instances(class_prob * mask_score, labels, masks_to_boxes(masks), masks, query, class_prob)


def postprocess(cls_logits: torch.Tensor, mask_logits: torch.Tensor, meta: ImageMeta,
                batch_shape: tuple[int, int], max_per_image: int = 100) -> Instances:
    """Final class logits ``[Q, C + 1]`` and stride-4 mask logits ``[Q, h, w]`` of one image → :class:`Instances`."""
    return instance_postprocess(cls_logits, resize_mask_logits(mask_logits, meta, batch_shape), max_per_image)


def group_by_class(inst: Instances, image_size: tuple[int, int]) -> ImageDetections:
    """mmdetection 2.x ``bbox2result`` + mask grouping: per label, rows (x1, y1, x2, y2, score) in instance order."""
    boxes = np.concatenate([inst.bboxes.numpy(), inst.scores.numpy()[:, None]], axis=1).astype(np.float32)
    labels, masks = inst.labels.numpy(), inst.masks.numpy()
    return ImageDetections(
        image_size=image_size,
        by_label={int(k): ClassDetections(boxes[labels == k], masks[labels == k]) for k in np.unique(labels)},
    )
