"""GenEval's stand-in downloads (eval/geneval/standin.py) are in the official formats and load through the same
paths as the real ones: an mmdetection 2.x Mask2Former checkpoint and OpenAI-named CLIP weights."""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from eval.geneval.colors import ClipColorClassifier
from eval.geneval.detectors import Mask2FormerDetector
from eval.geneval.mask2former import (Mask2Former, Mask2FormerConfig, detect_key_format, mmdet2_to_mmdet3_key,
                                      mmdet3_to_mmdet2_key, read_checkpoint)
from eval.geneval.standin import STANDIN_MASK2FORMER, build_standin_clip, build_standin_mask2former


def test_mmdet3_to_mmdet2_inverts_the_loader_rule():
    keys = list(Mask2Former(STANDIN_MASK2FORMER).state_dict())
    v2 = [mmdet3_to_mmdet2_key(k) for k in keys]
    assert [mmdet2_to_mmdet3_key(k) for k in v2] == keys
    assert detect_key_format(dict.fromkeys(v2)) == "mmdet2" and detect_key_format(dict.fromkeys(keys)) == "mmdet3"
    layer = "panoptic_head.transformer_decoder.layers.0."
    assert mmdet3_to_mmdet2_key(layer + "cross_attn.attn.in_proj_weight") == layer + "attentions.0.attn.in_proj_weight"
    assert mmdet3_to_mmdet2_key(layer + "self_attn.attn.in_proj_weight") == layer + "attentions.1.attn.in_proj_weight"
    enc = "panoptic_head.pixel_decoder.encoder.layers.0."
    assert mmdet3_to_mmdet2_key(enc + "self_attn.value_proj.weight") == enc + "attentions.0.value_proj.weight"


def test_flat_config_json_round_trips(tmp_path):
    path = tmp_path / "m2f.json"
    path.write_text(__import__("json").dumps(STANDIN_MASK2FORMER.to_dict()))
    assert Mask2FormerConfig.from_json(path) == STANDIN_MASK2FORMER
    path.write_text('{"embed_dims": 16, "heads": 3}')
    try:
        Mask2FormerConfig.from_json(path)
    except ValueError as err:
        assert "heads" in str(err)
    else:
        raise AssertionError("an unknown field must be an error")


def test_standin_detector_is_an_mmdet2_checkpoint_that_detects(tmp_path):
    checkpoint = build_standin_mask2former(tmp_path / "m2f.pth", tmp_path / "m2f.json")
    raw = torch.load(checkpoint, weights_only=True)
    assert set(raw) == {"meta", "state_dict"} and len(raw["meta"]["CLASSES"]) == 80
    assert detect_key_format(read_checkpoint(checkpoint)) == "mmdet2"
    detector = Mask2FormerDetector(checkpoint, config=str(tmp_path / "m2f.json"))  # the path, as the YAML passes it
    assert detector.config == STANDIN_MASK2FORMER
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8))
    found = detector.detect([image])[0]
    assert found.image_size == (32, 32)
    scores = [float(s) for d in found.by_label.values() for s in d.bboxes[:, 4]]
    assert any(s > 0.3 for s in scores)  # large random weights: some detections pass GenEval's threshold


def test_standin_clip_loads_as_openai_weights_with_quickgelu(tmp_path):
    weights = build_standin_clip(tmp_path / "clip.safetensors", tmp_path / "imagecot-test-standin-clip.json")
    classifier = ClipColorClassifier.from_pretrained(weights, model_name=str(tmp_path / "imagecot-test-standin-clip.json"))
    names = set(__import__("safetensors.torch", fromlist=["load_file"]).load_file(str(weights)))
    assert {"visual.conv1.weight", "token_embedding.weight", "text_projection", "logit_scale"} <= names  # OpenAI's
    image = Image.new("RGB", (32, 32), (200, 20, 20))
    colours = classifier.classify(image, np.array([[0, 0, 32, 32, 0.9]], np.float32), np.ones((1, 32, 32), bool), "dog")
    assert len(colours) == 1 and colours[0] in ClipColorClassifier.colors
