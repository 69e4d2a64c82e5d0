"""reward_models.vision_pretrain: the judge's SigLIP tower learns per-patch targets; nothing else of the judge moves."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import LlavaOnevisionForConditionalGeneration, LlavaOnevisionProcessor

from reward_models.tiny import build_tiny_llava_onevision
from reward_models.vision_pretrain import VisionPretrainConfig, judge_pixels, patch_targets, pretrain_vision_tower

COLOURS = [(200, 30, 30), (30, 30, 200)]


def _scene(rng: np.random.Generator) -> tuple[Image.Image, np.ndarray]:
    """16 px gray canvas, 4 px patches; each patch is red, blue or background with equal odds."""
    labels = rng.integers(0, 3, 16)
    pixels = np.full((16, 16, 3), 176, np.uint8)
    for p, label in enumerate(labels):
        if label:
            y, x = divmod(p, 4)
            pixels[4 * y:4 * y + 4, 4 * x:4 * x + 4] = COLOURS[label - 1]
    return Image.fromarray(pixels), labels


@pytest.fixture(scope="module")
def judge(tmp_path_factory):
    directory = build_tiny_llava_onevision(tmp_path_factory.mktemp("judge"), image_size=16, patch_size=4)
    return (LlavaOnevisionForConditionalGeneration.from_pretrained(directory),
            LlavaOnevisionProcessor.from_pretrained(directory))


def test_the_tower_learns_patch_colours_and_the_rest_of_the_judge_is_untouched(judge):
    model, processor = judge
    rng = np.random.default_rng(0)
    scenes = [_scene(rng) for _ in range(64)]
    images = [image for image, _ in scenes]
    labels = {id(image): label for image, label in scenes}
    targets = patch_targets(lambda image: (labels[id(image)],), images, 16)
    assert len(targets) == 1 and targets[0].shape == (64, 16)
    pixels = judge_pixels(processor, images)
    assert pixels.shape == (64, 3, 16, 16)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    config = VisionPretrainConfig(steps=40, batch_size=16, lr=4e-3, val_fraction=0.25, log_every=20)
    metrics = pretrain_vision_tower(model, pixels, targets, [3], config)
    assert [m["step"] for m in metrics] == [20, 40]
    assert metrics[-1]["loss"] < 0.5 * metrics[0]["loss"] or metrics[-1]["loss"] < 0.05
    assert metrics[-1]["val/target0/object_acc"] > 0.9 and metrics[-1]["val/target0/background_acc"] > 0.9
    after = model.state_dict()
    moved = {k for k in before if not torch.equal(before[k], after[k])}
    assert moved and all("vision_tower" in k for k in moved), sorted(moved)[:5]


def test_bad_targets_and_non_finite_losses_are_refused(judge):
    model, processor = judge
    images = [_scene(np.random.default_rng(s))[0] for s in range(4)]
    with pytest.raises(ValueError, match="target 0 has shape"):
        patch_targets(lambda image: (np.zeros(15, np.int64),), images, 16)
    pixels = judge_pixels(processor, images)
    with pytest.raises(ValueError, match="targets of"):
        pretrain_vision_tower(model, pixels, [torch.zeros(3, 16, dtype=torch.long)], [3])
    with pytest.raises(FloatingPointError, match="non-finite loss"):
        pretrain_vision_tower(model, pixels * float("nan"), [torch.zeros(4, 16, dtype=torch.long)], [3],
                              VisionPretrainConfig(steps=2, batch_size=2))
