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
    MEAN_RGB, STD_RGB, ImageMeta, fma_f32, image_meta, instance_postprocess, masks_to_boxes, normalize,
    preprocess_mmdet2, preprocess_mmdet3, rescale_size, resize_bilinear_f32, resize_bilinear_u8, resize_mask_logits,
    resized_u8,
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
    """mmdetection 3.x path: same metadata; input equal to OpenCV's float32 resize bit for bit (full rows / columns
    and the sha256 of the whole [3, Hp, Wp] input), at integer and non-integer scale factors alike.

    The reference was produced by OpenCV 5.0 through IPP's AVX-512 code; our resize is numpy arithmetic that gives the
    same bits on any CPU, so this comparison does not depend on the machine running the test.
    """
    image = _image(folder)
    tensors = load_file(require_shared(*FIXTURE, "cases", *folder.split("/"), "tensors.safetensors"))
    x, meta = preprocess_mmdet3(image)
    assert _meta_dict(meta) == case["mmdet3"]["meta"]
    for axis, key in ((1, "rows"), (2, "cols")):
        idx = tensors[f"mmdet3.f32.input.{key}_index"]
        torch.testing.assert_close(x.index_select(axis, idx), tensors[f"mmdet3.f32.input.{key}"], atol=0, rtol=0)
    assert hashlib.sha256(x.numpy().astype("<f4").tobytes()).hexdigest() == case["mmdet3"]["input_sha256_f32"]
    if "input_sha256_f64" in case["mmdet3"]:
        x64, _ = preprocess_mmdet3(image, torch.float64)
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


# (W, H) → hand-derived mmcv ``rescale_size`` to fit (1333, 800), in float64: s = min(1333 / long, 800 / short),
# new = int(x * s + 0.5), pad up to a multiple of 32, scale_factor = (new_w / w, new_h / h) (not s).
HAND_META = {
    # 1333 / 640 = 2.0828 > 800 / 480 = 5 / 3: the short side binds; 640 * 5 / 3 = 1066.67 → 1067; 1067 / 640 = 1.6671875
    (640, 480): dict(img_shape=(800, 1067), pad_shape=(800, 1088), scale_factor=(1.6671875, 5 / 3)),
    (480, 640): dict(img_shape=(1067, 800), pad_shape=(1088, 800), scale_factor=(5 / 3, 1.6671875)),
    # integer factor: min(1333 / 200, 800 / 200) = 4
    (200, 200): dict(img_shape=(800, 800), pad_shape=(800, 800), scale_factor=(4.0, 4.0)),
}


@pytest.mark.parametrize("size", sorted(HAND_META), ids=lambda s: f"{s[0]}x{s[1]}")
def test_resize_metadata_by_hand_both_paths(size):
    """Sizes and scale factors of both pre-processing paths against hand-derived values (float64, exact).

    Where mmdetection 2.x (GenEval's pipeline; mmcv-full 1.7) and 3.x (mmcv 2.1) agree: the size rule
    (``mmcv.rescale_size`` / ``_scale_size`` are the same code in both), and ``scale_factor`` = (new_w / w, new_h / h)
    computed in float64 from the rounded size, which at 640x480 is not the factor s = 5 / 3 used to round it.
    Where they differ: 2.x stores ``scale_factor`` as a float32 array (w, h, w, h) and ``img_shape`` with the channel
    count; 3.x stores a tuple of two Python floats and (h, w). ``ImageMeta`` keeps the float64 pair and (h, w): the
    detector never reads ``scale_factor`` (Mask2Former's post-processing uses ``img_shape``, the padded batch shape and
    ``ori_shape``). The pixels differ as well: 2.x resizes the uint8 image and pads with 128 before normalising,
    3.x resizes in float32 (the IPP arithmetic of :func:`resize_bilinear_f32`), normalises, then pads with 0.
    """
    w, h = size
    expected = HAND_META[size]
    pixels = (np.arange(h * w * 3, dtype=np.int64).reshape(h, w, 3) * 7 % 251).astype(np.uint8)
    image = Image.fromarray(pixels)
    x2, meta2 = preprocess_mmdet2(image)
    x3, meta3 = preprocess_mmdet3(image)
    for meta in (meta2, meta3):
        assert meta.ori_shape == (h, w)
        assert meta.img_shape == expected["img_shape"] and meta.pad_shape == expected["pad_shape"]
        assert meta.scale_factor == expected["scale_factor"]  # float64, exact
    (new_h, new_w), (pad_h, pad_w) = expected["img_shape"], expected["pad_shape"]
    assert x2.shape == x3.shape == (3, pad_h, pad_w)
    pad_value = (128 - torch.tensor(MEAN_RGB)) / torch.tensor(STD_RGB)  # 2.x: 128 padded before normalisation
    assert (x2[:, new_h:, :] == pad_value[:, None, None]).all() and (x2[:, :, new_w:] == pad_value[:, None, None]).all()
    assert (x3[:, new_h:, :] == 0).all() and (x3[:, :, new_w:] == 0).all()  # 3.x: 0 padded after normalisation


def test_resize_f32_by_hand():
    """Two source pixels (10, 30) → four: positions (d + 0.5) / 2 - 0.5 = -0.25, 0.25, 0.75, 1.25; the outer two lie
    beyond the first / last pixel and take it, the inner two are 10 + t * (30 - 10)."""
    img = np.array([[[10.0], [30.0]]], np.float32)  # [1, 2, 1]
    out = resize_bilinear_f32(img, 4, 1)
    assert out.dtype == np.float32 and out[0, :, 0].tolist() == [10.0, 15.0, 25.0, 30.0]
    tall = resize_bilinear_f32(img.transpose(1, 0, 2), 1, 4)  # the same along the other axis
    assert tall[:, 0, 0].tolist() == [10.0, 15.0, 25.0, 30.0]


def test_fma_f32_rounds_once():
    """``a * b + c`` with a single float32 rounding, in two cases where rounding twice gives another float32.

    (1) a = 1 + 2^-23, b = 1 - 2^-23, c = -1: a * b = 1 - 2^-46 rounds to 1 in float32, so two roundings give 0; once:
    -2^-46. (2) a = 2^-24 (1 + 2^-12), b = (2^24 - 2^12 + 1) 2^-24, c = 1: a * b + c = 1 + 2^-24 + 2^-60, just above the
    float32 midpoint 1 + 2^-24; a float64 sum drops the 2^-60 and lands on the midpoint, which rounds to even (1.0);
    rounded once the result is 1 + 2^-23.
    """
    f32 = np.float32
    a, b, c = f32(1 + 2.0**-23), f32(1 - 2.0**-23), f32(-1)
    assert fma_f32(a, b, c) == f32(-(2.0**-46)) and a * b + c == 0
    a, b, c = f32(2.0**-24 * (1 + 2.0**-12)), f32((2**24 - 2**12 + 1) * 2.0**-24), f32(1)
    assert float(a) * float(b) == 2.0**-24 + 2.0**-60  # exact in float64: both operands are exact float32 values
    assert fma_f32(a, b, c) == f32(1 + 2.0**-23)
    assert f32(float(a) * float(b) + float(c)) == f32(1)  # the double rounding this function avoids


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


DTYPES = {"f64": torch.float64, "f32": torch.float32}


def _postprocess_unit(torch_dtype: torch.dtype):
    """Our run of the designed post-processing case: (fixture tensors, unit entry, upsampled, resized, instances)."""
    unit = INDEX.get("postprocess_unit") or pytest.skip("fixture index missing")
    t = load_file(require_shared(*FIXTURE, "cases", "postprocess_unit.safetensors"))
    cls = t["inputs.cls_logits"].to(torch_dtype)
    mask = t["inputs.mask_logits"].to(torch_dtype)
    meta = ImageMeta(tuple(unit["ori_shape"]), tuple(unit["img_shape"]), tuple(unit["batch_input_shape"]), (1.0, 1.0))
    batch = torch.nn.functional.interpolate(mask[None], size=meta.pad_shape, mode="bilinear", align_corners=False)[0]
    ori = resize_mask_logits(mask, meta, meta.pad_shape)
    return t, unit, batch, ori, instance_postprocess(cls, ori)


def _by_key(query: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Indices sorting instances by (query, label): ``topk(sorted=False)`` returns them in an order that depends on
    the CPU's kernels (AVX2 and AVX-512 order the tied probabilities of the designed queries differently)."""
    return torch.argsort(query * 80 + labels)


@pytest.mark.parametrize("dtype", ["f64", "f32"])
def test_postprocess_unit(dtype):
    """Designed logits through mmdetection's post-processing only (README §5.4), every stored tensor.

    Values within a few ulp of the run's dtype (eps), because the CPU's vector kernels (AVX2 / AVX-512 / none; FMA or
    not) round differently, in float64 too (AVX2 and AVX-512 exp differ in the last bit): an interpolated logit is a
    sum of 4 products (2 per resize), within 8 eps of the largest logit (``logit_atol``); a per-query sum of n logits
    within n of that; a class probability (softmax over 81 logits) within 100 eps relative; a score (the probability
    times a ratio of two sums over the image's n pixels, reduced in the kernel's order) within (n + 100) eps relative.
    Exact: the instances as a set of (query, label), the masks except at pixels whose float64 logit lies within
    ``logit_atol`` of 0 (none in float64), the box of every instance whose mask is exact, and the designed queries.
    """
    torch_dtype = DTYPES[dtype]
    eps = float(torch.finfo(torch_dtype).eps)
    t, unit, batch, ori, inst = _postprocess_unit(torch_dtype)
    ori64 = ori.double() if dtype == "f64" else _postprocess_unit(torch.float64)[3]
    logit_atol = 8 * eps * float(ori64.abs().max())
    for name, ours in (("mask_logits_batch_input", batch), ("mask_logits_ori", ori)):
        p = f"{dtype}.{name}"
        assert t[f"{p}.shape"].tolist() == list(ours.shape)
        n = ours[0].numel()
        rows, cols = t[f"{p}.grid_rows"], t[f"{p}.grid_cols"]
        torch.testing.assert_close(ours[:, rows][:, :, cols], t[f"{p}.grid"], atol=logit_atol, rtol=0)
        torch.testing.assert_close(ours.double().flatten(1).sum(1), t[f"{p}.sum"], atol=n * logit_atol, rtol=0)
        sumsq = t[f"{p}.sumsq"]  # |Σx² - Σy²| <= δ (2 sqrt(n Σy²) + n δ)  (Cauchy-Schwarz)
        bound = logit_atol * (2 * (n * sumsq).sqrt() + n * logit_atol)
        assert ((ours.double() ** 2).flatten(1).sum(1) - sumsq).abs().le(bound).all(), f"{p}.sumsq"
    # [Q, H, W]: the sign of these logits is rounding (the designed exact zeros of query 4 stay exactly 0)
    uncertain = (ori64 != 0) & (ori64.abs() <= logit_atol)
    torch.testing.assert_close((ori > 0).flatten(1).sum(1), t[f"{dtype}.mask_logits_ori.pos_count"],
                               atol=int(uncertain.flatten(1).sum(1).max()), rtol=0)
    r = f"{dtype}.result"
    a, b = _by_key(inst.query_index, inst.labels), _by_key(t[f"{r}.query_index"], t[f"{r}.labels"])
    assert torch.equal(inst.query_index[a], t[f"{r}.query_index"][b])
    assert torch.equal(inst.labels[a], t[f"{r}.labels"][b])
    torch.testing.assert_close(inst.class_prob[a], t[f"{r}.class_prob"][b], atol=0, rtol=100 * eps)
    torch.testing.assert_close(inst.scores[a], t[f"{r}.scores"][b], atol=0, rtol=(ori[0].numel() + 100) * eps)
    ref_masks = _unpack(t[f"{r}.masks_packbits_zlib"], t[f"{r}.masks_shape"])[b]
    certain = ~uncertain[inst.query_index[a]]
    assert torch.equal(inst.masks[a][certain], ref_masks[certain])
    exact = (inst.masks[a] == ref_masks).flatten(1).all(1)
    assert torch.equal(inst.bboxes[a][exact], t[f"{r}.bboxes"][b][exact])
    assert dtype == "f32" or (exact.all() and not uncertain.any())  # float64: every mask and box exact
    # designed queries (README §5.4): empty masks → zero box and score 0; query 5 covers the whole image
    for q in (3, 6):
        sel = inst.query_index == q
        assert sel.any() and (inst.bboxes[sel] == 0).all() and (inst.scores[sel] == 0).all()
    h, w = unit["ori_shape"]
    assert (inst.bboxes[inst.query_index == 5] == torch.tensor([0.0, 0.0, w, h])).all()
    assert set(inst.labels[inst.query_index == 2].tolist()) >= {7, 8}
