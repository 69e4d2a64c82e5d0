"""Strict loading of mmdetection Mask2Former checkpoints (3.x and 2.x key names) into the pure-PyTorch port."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from eval.geneval.mask2former import (
    Mask2Former, Mask2FormerConfig, detect_key_format, load_mask2former, load_weights, mmdet2_to_mmdet3_key,
    read_checkpoint,
)
from tests.helpers import require_shared

FIXTURE = ("fixtures", "mask2former_tiny")


@pytest.fixture(scope="module")
def tiny():
    root = require_shared(*FIXTURE)
    config = Mask2FormerConfig.from_json(root / "config.json")
    state = load_file(root / "weights_mmdet3.safetensors")
    key_map = json.loads((root / "key_map_v2.json").read_text())
    return config, state, key_map


def test_config_from_fixture_json_and_official_defaults(tiny):
    config, _, _ = tiny
    assert (config.embed_dims, config.num_heads, config.channels) == (32, (1, 2, 4, 8), 64)
    assert (config.encoder_ffn, config.decoder_ffn, config.num_feats, config.gn_groups) == (128, 256, 32, 32)
    assert (config.depths, config.decoder_layers, config.num_queries, config.num_classes) == ((2, 2, 18, 2), 9, 100, 80)
    official = Mask2FormerConfig()
    assert (official.embed_dims, official.num_heads, official.channels) == (96, (3, 6, 12, 24), 256)
    assert (official.encoder_ffn, official.decoder_ffn, official.num_feats) == (1024, 2048, 128)


def test_official_model_has_the_fixture_structure(tiny):
    """Default widths: the same 649 keys as the fixture, with official shapes (Swin-S + 256-wide head)."""
    _, state, _ = tiny
    sd = Mask2Former().state_dict()
    assert set(sd) == set(state)
    assert sd["panoptic_head.cls_embed.weight"].shape == (81, 256)
    assert sd["backbone.stages.2.blocks.17.attn.w_msa.relative_position_bias_table"].shape == (169, 12)
    assert sd["backbone.stages.2.downsample.reduction.weight"].shape == (768, 1536)
    assert sd["panoptic_head.pixel_decoder.input_convs.0.conv.weight"].shape == (256, 768, 1, 1)


def test_load_mmdet3_strict(tiny):
    config, state, _ = tiny
    model = Mask2Former(config)
    load_weights(model, state)
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k


def test_mmdet2_rule_reproduces_key_map(tiny):
    """The coded 2.x → 3.x rule inverts ``key_map_v2.json`` on all 649 keys (180 renamed)."""
    _, _, key_map = tiny
    assert len(key_map) == 649 and sum(k != v for k, v in key_map.items()) == 180
    for v3, v2 in key_map.items():
        assert mmdet2_to_mmdet3_key(v2) == v3


def test_load_mmdet2_names_strict(tiny):
    config, state, key_map = tiny
    v2 = {key_map[k]: v for k, v in state.items()}
    assert detect_key_format(v2) == "mmdet2" and detect_key_format(state) == "mmdet3"
    model = Mask2Former(config)
    load_weights(model, v2)
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k
    with pytest.raises(ValueError, match="key_format='mmdet3' requested but the keys are mmdet2"):
        load_weights(Mask2Former(config), v2, key_format="mmdet3")


def test_v3_checkpoint_under_forced_v2_layout_is_an_error(tiny):
    """GenEval trap #4 (a v3 checkpoint in the v2 model silently scoring 0) cannot happen: it raises."""
    config, state, _ = tiny
    with pytest.raises(ValueError, match="key_format='mmdet2' requested but the keys are mmdet3"):
        load_weights(Mask2Former(config), state, key_format="mmdet2")


def test_mixed_missing_unexpected_and_shape_errors_name_the_keys(tiny):
    config, state, key_map = tiny
    mixed = dict(state)
    k = "panoptic_head.transformer_decoder.layers.0.cross_attn.attn.in_proj_bias"
    mixed[key_map[k]] = mixed.pop(k)
    mixed.pop("panoptic_head.transformer_decoder.layers.1.ffn.layers.1.bias")
    mixed[key_map["panoptic_head.transformer_decoder.layers.1.ffn.layers.1.bias"]] = torch.zeros(64)
    with pytest.raises(ValueError, match="mixes mmdetection 2.x keys"):
        load_weights(Mask2Former(config), mixed)
    missing = {k: v for k, v in state.items() if k != "panoptic_head.query_feat.weight"}
    with pytest.raises(ValueError, match=r"missing \(1\): \['panoptic_head.query_feat.weight'\]"):
        load_weights(Mask2Former(config), missing)
    extra = dict(state, **{"panoptic_head.extra.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match=r"unexpected \(1\): \['panoptic_head.extra.weight'\]"):
        load_weights(Mask2Former(config), extra)
    reshaped = dict(state, **{"panoptic_head.cls_embed.weight": torch.zeros(80, 64)})  # a 79-class head
    with pytest.raises(ValueError, match=r"wrong shape \(1\): \['panoptic_head.cls_embed.weight: checkpoint "
                                         r"\(80, 64\) vs model \(81, 64\)'\]"):
        load_weights(Mask2Former(config), reshaped)
    bad_index = dict(state)
    key = "backbone.stages.0.blocks.0.attn.w_msa.relative_position_index"
    bad_index[key] = bad_index[key].flip(0)
    with pytest.raises(ValueError, match="not the standard Swin index"):
        load_weights(Mask2Former(config), bad_index)


def test_pth_with_mmdet_wrapper(tiny, tmp_path):
    """A 2.x-style ``.pth`` (``{'meta': ..., 'state_dict': ...}``) loads with ``weights_only=True``."""
    config, state, key_map = tiny
    path = tmp_path / "m2f_v2.pth"
    torch.save({"meta": {"mmdet_version": "2.28.2", "CLASSES": ["person"]},
                "state_dict": {key_map[k]: v for k, v in state.items()}}, path)
    assert set(read_checkpoint(path)) == set(key_map.values())
    model = load_mask2former(path, config, dtype=torch.float64)
    assert not model.training
    assert model.panoptic_head.cls_embed.weight.dtype == torch.float64
    assert torch.equal(model.panoptic_head.cls_embed.weight, state["panoptic_head.cls_embed.weight"].double())


def test_missing_checkpoint_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_mask2former(tmp_path / "nope.pth")
    with pytest.raises(FileNotFoundError, match="cfg.json"):
        Mask2FormerConfig.from_json(tmp_path / "cfg.json")
