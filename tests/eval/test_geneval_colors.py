"""GenEval colour classifier: crop pixels, preprocessing, templates, QuickGELU guard and classifier plumbing.

A tiny open_clip CLIP (random init, QuickGELU) stands in for ViT-L/14; no weights are loaded or downloaded.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

open_clip = pytest.importorskip("open_clip")
from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg  # noqa: E402

from eval.geneval.colors import (  # noqa: E402
    COLORS,
    OPENAI_MEAN,
    OPENAI_STD,
    ClipColorClassifier,
    clip_preprocess,
    object_crop,
)


def tiny_clip(quick_gelu: bool = True) -> CLIP:
    torch.manual_seed(0)
    vision = CLIPVisionCfg(layers=1, width=32, head_width=16, patch_size=32, image_size=224)
    text = CLIPTextCfg(context_length=77, vocab_size=49408, width=32, heads=2, layers=1)
    return CLIP(embed_dim=16, vision_cfg=vision, text_cfg=text, quick_gelu=quick_gelu)


def tokenizer():
    return open_clip.get_tokenizer("ViT-L-14-quickgelu")


def test_crop_composites_mask_on_gray_then_crops_box():
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)  # H=6, W=8
    mask = np.zeros((6, 8), bool)
    mask[2:4, 3:6] = True
    mask[1, 2] = True
    box = np.array([2, 1, 6, 5, 0.9], np.float32)
    expected = np.where(mask[..., None], pixels, np.uint8(153))[1:5, 2:6]
    crop = object_crop(Image.fromarray(pixels), box, mask)
    assert crop.size == (4, 4)
    np.testing.assert_array_equal(np.asarray(crop), expected)
    # "original" keeps the background; crop=False keeps the whole composited image.
    kept = object_crop(Image.fromarray(pixels), box, mask, "original")
    np.testing.assert_array_equal(np.asarray(kept), pixels[1:5, 2:6])
    assert object_crop(Image.fromarray(pixels), box, mask, crop=False).size == (8, 6)
    with pytest.raises(ValueError, match="mask shape"):
        object_crop(Image.fromarray(pixels), box, mask[:5])


def test_preprocess_center_crops_and_normalises():
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, (224, 300, 3), dtype=np.uint8)  # short side already 224: no resampling
    out = clip_preprocess()(Image.fromarray(pixels))
    left = (300 - 224) // 2
    expected = (pixels[:, left : left + 224].astype(np.float32) / 255 - np.array(OPENAI_MEAN, np.float32)) / np.array(
        OPENAI_STD, np.float32
    )
    assert out.shape == (3, 224, 224)
    np.testing.assert_allclose(out.permute(1, 2, 0).numpy(), expected, atol=1e-6)


def test_gelu_model_is_rejected_loudly():
    with pytest.raises(ValueError, match="QuickGELU"):
        ClipColorClassifier(tiny_clip(quick_gelu=False), tokenizer())


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.safetensors"):
        ClipColorClassifier.from_pretrained(tmp_path / "nope.safetensors")


def test_text_classifier_uses_official_templates_and_normalises():
    tok = tokenizer()
    seen = []

    def recording_tokenizer(texts):
        seen.extend(texts)
        return tok(texts)

    clf = ClipColorClassifier(tiny_clip(), recording_tokenizer)
    weights = clf.text_classifier("car")
    assert weights.shape == (16, 10)
    torch.testing.assert_close(weights.norm(dim=0), torch.ones(10))
    assert seen[:3] == ["a photo of a red car", "a photo of a red-colored car", "a photo of a red object"]
    assert seen[3] == "a photo of a orange car"  # no a/an correction, as the official templates
    assert len(seen) == 30
    clf.text_classifier("car")
    assert len(seen) == 30  # cached per class
    # Column c = normalised mean of the three normalised template embeddings of colour c.
    with torch.no_grad():
        emb = torch.nn.functional.normalize(clf.model.encode_text(tok(seen[6:9])), dim=-1).mean(0)
    torch.testing.assert_close(weights[:, 2], emb / emb.norm())


def test_classify_returns_argmax_colour_per_crop_in_order():
    clf = ClipColorClassifier(tiny_clip(), tokenizer(), batch_size=2)
    # Known answer: the text classifier is the identity on the first 10 feature dims, and the image "features" put
    # all weight on the colour index encoded in the crop's red channel (object i is painted with red = 20 * i).
    clf._text_cache["cup"] = torch.eye(16)[:, :10]

    def encode_image(pixels):
        red = pixels[:, 0, 112, 112] * OPENAI_STD[0] + OPENAI_MEAN[0]
        index = torch.round(red * 255 / 20).long()
        return torch.nn.functional.one_hot(index, 16).float()

    clf.model.encode_image = encode_image
    answers = [3, 0, 9, 5, 7]
    image = np.full((64, 96, 3), 200, np.uint8)
    boxes, masks = [], []
    for k, colour_index in enumerate(answers):
        x0 = 4 + 18 * k
        image[10:40, x0 : x0 + 14] = (20 * colour_index, 0, 0)
        mask = np.zeros((64, 96), bool)
        mask[10:40, x0 : x0 + 14] = True
        masks.append(mask)
        boxes.append([x0, 10, x0 + 14, 40, 0.9])
    got = clf.classify(Image.fromarray(image), np.array(boxes, np.float32), np.stack(masks), "cup")
    assert got == [COLORS[i] for i in answers]
    assert clf.classify(Image.fromarray(image), np.zeros((0, 5), np.float32), np.zeros((0, 64, 96), bool), "cup") == []


@pytest.mark.parametrize("dtype", ["float32", torch.bfloat16])
def test_real_tiny_model_runs_end_to_end(dtype):
    clf = ClipColorClassifier(tiny_clip(), tokenizer(), dtype=dtype)
    image = Image.new("RGB", (40, 30), (255, 0, 0))
    mask = np.ones((1, 30, 40), bool)
    out = clf.classify(image, np.array([[0, 0, 40, 30, 1.0]], np.float32), mask, "apple")
    assert len(out) == 1 and out[0] in COLORS


def test_from_pretrained_loads_local_safetensors_strictly(tmp_path, monkeypatch):
    from open_clip import factory
    from safetensors.torch import save_file

    cfg = {
        "embed_dim": 16,
        "quick_gelu": True,
        "vision_cfg": {"layers": 1, "width": 32, "head_width": 16, "patch_size": 32, "image_size": 224},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
    }
    monkeypatch.setitem(factory._MODEL_CONFIGS, "tiny-test-quickgelu", cfg)
    source = tiny_clip()
    path = tmp_path / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    clf = ClipColorClassifier.from_pretrained(path, model_name="tiny-test-quickgelu")
    for key, value in source.state_dict().items():
        torch.testing.assert_close(clf.model.state_dict()[key], value)
    save_file({k: v.contiguous() for k, v in list(source.state_dict().items())[1:]}, str(path))
    with pytest.raises(RuntimeError, match="Missing key"):
        ClipColorClassifier.from_pretrained(path, model_name="tiny-test-quickgelu")
