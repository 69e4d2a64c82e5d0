"""Pre- and post-processing of the Mask2Former detector against ``fixtures/mask2former_tiny`` and by hand."""
from __future__ import annotations

import hashlib
import zlib

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from eval.geneval.m2f_processing import (
    ImageMeta, image_meta, instance_postprocess, masks_to_boxes, normalize, preprocess_mmdet2, preprocess_mmdet3,
    rescale_size, resize_bilinear_u8, resize_mask_logits, resized_u8,
)
from tests.helpers import load_manifest, require_shared

FIXTURE = ("fixtures", "mask2former_tiny")
INDEX = load_manifest(*FIXTURE, "cases", "index.json")
# (folder under cases/, case entry) for the model cases and the preprocessing-only cases
ALL_CASES = [(c["name"], c) for c in INDEX.get("model_cases", [])] + [
    (f"preprocess_only/{c['name']}", c) for c in INDEX.get("preprocess_cases", [])
]
IDS = [name for name, _ in ALL_CASES]


def _image(folder: str) -> Image.Image:
    return Image.open(require_shared(*FIXTURE, "cases", *folder.split("/"), "image.png"))


def _meta_dict(meta: ImageMeta) -> dict:
    return {"ori_shape": list(meta.ori_shape), "img_shape": list(meta.img_shape), "pad_shape": list(meta.pad_shape),
            "batch_input_shape": list(meta.pad_shape), "scale_factor": list(meta.scale_factor)}


@pytest.mark.parametrize("folder,case", ALL_CASES, ids=IDS)
def test_geneval_resize_is_bit_exact(folder, case):
    """The uint8 resize + 128 padding equals OpenCV's (``geneval_input_u8.png``) on every pixel."""
    ref = np.asarray(Image.open(require_shared(*FIXTURE, "cases", *folder.split("/"), "geneval_input_u8.png"))
                     .convert("RGB"))
    np.testing.assert_array_equal(resized_u8(_image(folder)), ref)


@pytest.mark.parametrize("folder,case", ALL_CASES, ids=IDS)
def test_geneval_input_sha_and_meta(folder, case):
    x, meta = preprocess_mmdet2(_image(folder))
    assert _meta_dict(meta) == case["geneval"]["meta"]
    assert list(x[None].shape) == case["geneval"]["input_shape"]
    assert hashlib.sha256(x.numpy().astype("<f4").tobytes()).hexdigest() == case["geneval"]["input_sha256_f32"]


@pytest.mark.parametrize("folder,case", ALL_CASES, ids=IDS)
def test_mmdet3_input(folder, case):
    """mmdetection 3.x path: same metadata; input within 2e-6 of OpenCV's float32 resize (exact for integer
    scale factors, where the sha256 must match too)."""
    image = _image(folder)
    tensors = load_file(require_shared(*FIXTURE, "cases", *folder.split("/"), "tensors.safetensors"))
    x, meta = preprocess_mmdet3(image)
    assert _meta_dict(meta) == case["mmdet3"]["meta"]
    for axis, key in ((1, "rows"), (2, "cols")):
        idx = tensors[f"mmdet3.f32.input.{key}_index"]
        torch.testing.assert_close(x.index_select(axis, idx), tensors[f"mmdet3.f32.input.{key}"], atol=2e-6, rtol=0)
    torch.testing.assert_close(x.double().sum((1, 2)), tensors["mmdet3.f32.input.channel_sum"], atol=0.02, rtol=0)
    sha = hashlib.sha256(x.numpy().astype("<f4").tobytes()).hexdigest()
    if all(float(s).is_integer() for s in meta.scale_factor):
        assert sha == case["mmdet3"]["input_sha256_f32"]
        x64, _ = preprocess_mmdet3(image, torch.float64)
        if "input_sha256_f64" in case["mmdet3"]:
            assert hashlib.sha256(x64.numpy().astype("<f8").tobytes()).hexdigest() == case["mmdet3"]["input_sha256_f64"]


def test_normalisation_matches_lut():
    """float32 ``(v - mean) / std`` equals the fixture's ``imnormalize`` lookup table for all 3 × 256 values."""
    lut = load_file(require_shared(*FIXTURE, "cases", "geneval_normalize_lut.safetensors"))["geneval_normalize_lut"]
    canvas = np.repeat(np.arange(256, dtype=np.uint8)[None, :, None], 3, axis=2)  # [1, 256, 3]: value = column
    x = normalize(torch.from_numpy(canvas))
    torch.testing.assert_close(x[:, 0, :], lut, atol=0, rtol=0)


def test_rescale_size_by_hand():
    assert rescale_size(256, 256) == (800, 800)
    assert rescale_size(1024, 1024) == (800, 800)
    assert rescale_size(640, 360) == (1333, 750)  # long side bound: 1333 / 640 < 800 / 360
    assert rescale_size(200, 300) == (800, 1200)
    assert image_meta(640, 360).pad_shape == (768, 1344)


def test_resize_identity_and_constant():
    img = np.full((5, 7, 3), 77, np.uint8)
    np.testing.assert_array_equal(resize_bilinear_u8(img, 7, 5), img)
    np.testing.assert_array_equal(resize_bilinear_u8(img, 13, 11), np.full((11, 13, 3), 77, np.uint8))


def test_masks_to_boxes_by_hand():
    masks = torch.zeros(3, 4, 6, dtype=torch.bool)
    masks[0, 1:3, 2:5] = True
    masks[2, 3, 0] = True
    boxes = masks_to_boxes(masks)
    assert boxes.dtype == torch.float32
    assert boxes.tolist() == [[2, 1, 5, 3], [0, 0, 0, 0], [0, 3, 1, 4]]


def _unpack(buf: torch.Tensor, shape: torch.Tensor) -> torch.Tensor:
    n, h, w = shape.tolist()
    bits = np.unpackbits(np.frombuffer(zlib.decompress(buf.numpy().tobytes()), np.uint8), count=n * h * w)
    return torch.from_numpy(bits.astype(bool).reshape(n, h, w))


@pytest.mark.parametrize("dtype", ["f64", "f32"])
def test_postprocess_unit(dtype):
    """Designed logits through mmdetection's post-processing only (README §5.4), every stored tensor."""
    unit = INDEX.get("postprocess_unit") or pytest.skip("fixture index missing")
    t = load_file(require_shared(*FIXTURE, "cases", "postprocess_unit.safetensors"))
    torch_dtype = torch.float64 if dtype == "f64" else torch.float32
    cls = t["inputs.cls_logits"].to(torch_dtype)
    mask = t["inputs.mask_logits"].to(torch_dtype)
    meta = ImageMeta(tuple(unit["ori_shape"]), tuple(unit["img_shape"]), tuple(unit["batch_input_shape"]), (1.0, 1.0))
    batch = torch.nn.functional.interpolate(mask[None], size=meta.pad_shape, mode="bilinear", align_corners=False)[0]
    ori = resize_mask_logits(mask, meta, meta.pad_shape)
    tol = dict(atol=1e-12, rtol=1e-12) if dtype == "f64" else dict(atol=1e-5, rtol=1e-6)
    for name, ours in (("mask_logits_batch_input", batch), ("mask_logits_ori", ori)):
        p = f"{dtype}.{name}"
        assert t[f"{p}.shape"].tolist() == list(ours.shape)
        rows, cols = t[f"{p}.grid_rows"], t[f"{p}.grid_cols"]
        torch.testing.assert_close(ours[:, rows][:, :, cols], t[f"{p}.grid"], atol=0, rtol=0)
        torch.testing.assert_close(ours.double().flatten(1).sum(1), t[f"{p}.sum"], **tol)
        torch.testing.assert_close((ours.double() ** 2).flatten(1).sum(1), t[f"{p}.sumsq"], **tol)
        assert torch.equal((ours > 0).flatten(1).sum(1), t[f"{p}.pos_count"])
    inst = instance_postprocess(cls, ori)
    r = f"{dtype}.result"
    assert torch.equal(inst.query_index, t[f"{r}.query_index"])  # same (unsorted) top-k order as mmdetection
    assert torch.equal(inst.labels, t[f"{r}.labels"])
    assert torch.equal(inst.bboxes, t[f"{r}.bboxes"])
    torch.testing.assert_close(inst.scores, t[f"{r}.scores"], atol=0, rtol=0)
    torch.testing.assert_close(inst.class_prob, t[f"{r}.class_prob"], atol=0, rtol=0)
    assert torch.equal(inst.masks.flatten(1).sum(1), t[f"{r}.masks_area"])
    assert torch.equal(inst.masks, _unpack(t[f"{r}.masks_packbits_zlib"], t[f"{r}.masks_shape"]))
    # designed queries (README §5.4): empty masks → zero box and score 0; query 5 covers the whole image
    for q in (3, 6):
        rows = inst.query_index == q
        assert rows.any() and (inst.bboxes[rows] == 0).all() and (inst.scores[rows] == 0).all()
    full = inst.query_index == 5
    h, w = unit["ori_shape"]
    assert (inst.bboxes[full] == torch.tensor([0.0, 0.0, w, h])).all()
    assert set(inst.labels[inst.query_index == 2].tolist()) >= {7, 8}
