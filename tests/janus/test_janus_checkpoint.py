"""Strict loading of both Janus-Pro checkpoint layouts (transformers' and DeepSeek's original), written from a tiny
random model into temporary directories."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from janus import keymap
from janus.checkpoint import CheckpointError, load_janus
from janus.tiny import write_deepseek_layout, write_hf_layout


@pytest.fixture(scope="module")
def bundle(tiny32):
    return tiny32


def assert_same_model(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def same_tokens(a, b, prompt="a photo of a red cat"):
    out = [x.pipeline()([prompt], generator=[torch.Generator().manual_seed(4)], output_type="tokens").tokens
           for x in (a, b)]
    return torch.equal(*out)


# ---------------------------------------------------------------------------------------------------- round trips
def test_hf_layout_roundtrip(bundle, tmp_path):
    write_hf_layout(bundle, tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "janus"
    gen = json.loads((tmp_path / "generation_config.json").read_text())
    assert (gen["guidance_scale"], gen["temperature"]) == (5, 1.0)
    assert gen["generation_kwargs"]["boi_token_id"] == bundle.layout.boi_id
    loaded = load_janus(tmp_path)
    assert loaded.layout == bundle.layout
    assert_same_model(loaded.model, bundle.model)
    assert loaded.model.lm_head.weight.data_ptr() != loaded.model.get_input_embeddings().weight.data_ptr()
    assert same_tokens(loaded, bundle)


@pytest.mark.parametrize("shards", [1, 2])
def test_deepseek_layout_roundtrip(bundle, tmp_path, shards):
    write_deepseek_layout(bundle, tmp_path, shards=shards)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model_type"] == "multi_modality" and config["gen_head_config"]["cls"] == "vision_head"
    assert (tmp_path / ("pytorch_model.bin" if shards == 1 else "pytorch_model.bin.index.json")).is_file()
    loaded = load_janus(tmp_path, dtype="float32")
    assert loaded.layout == bundle.layout
    assert_same_model(loaded.model, bundle.model)
    assert same_tokens(loaded, bundle)


# ---------------------------------------------------------------------------------------------------- key mapping
@pytest.mark.parametrize("original, hf", [
    ("language_model.model.layers.29.self_attn.q_proj.weight",
     "model.language_model.layers.29.self_attn.q_proj.weight"),
    ("language_model.lm_head.weight", "lm_head.weight"),
    ("gen_head.output_mlp_projector.bias", "model.generation_head.proj_out.bias"),
    ("gen_head.vision_head.weight", "model.generation_head.vision_head.weight"),
    ("gen_embed.weight", "model.generation_embeddings.weight"),
    ("gen_aligner.layers.0.weight", "model.generation_aligner.fc1.weight"),
    ("gen_aligner.layers.2.bias", "model.generation_aligner.hidden_layers.0.bias"),
    ("aligner.layers.2.weight", "model.aligner.hidden_layers.0.weight"),
    ("gen_vision_model.decoder.conv_blocks.0.res.1.conv2.weight", "model.vqmodel.decoder.up.0.block.1.conv2.weight"),
    ("gen_vision_model.encoder.conv_blocks.3.downsample.conv.bias",
     "model.vqmodel.encoder.down.3.downsample.conv.bias"),
    ("gen_vision_model.encoder.mid.1.proj_out.weight", "model.vqmodel.encoder.mid.attn_1.proj_out.weight"),
    ("gen_vision_model.decoder.mid.2.norm1.bias", "model.vqmodel.decoder.mid.block_2.norm1.bias"),
    ("gen_vision_model.quantize.embedding.weight", "model.vqmodel.quantize.embedding.weight"),
    ("vision_model.vision_tower.patch_embed.proj.weight", "model.vision_model.embeddings.patch_embedding.weight"),
    ("vision_model.vision_tower.blocks.23.norm2.bias", "model.vision_model.encoder.layers.23.layer_norm2.bias"),
    ("vision_model.vision_tower.blocks.0.attn.proj.weight",
     "model.vision_model.encoder.layers.0.self_attn.projection_layer.weight"),
    ("vision_model.vision_tower.norm.weight", "model.vision_model.post_layernorm.weight"),
])
def test_documented_key_mapping(original, hf):
    assert keymap.deepseek_to_hf_keys(original) == [hf]
    assert keymap.hf_to_deepseek_key(hf) == original


def test_fused_qkv_dropped_and_unknown_keys():
    qkv = "vision_model.vision_tower.blocks.2.attn.qkv.bias"
    assert keymap.deepseek_to_hf_keys(qkv) == [f"model.vision_model.encoder.layers.2.self_attn.{p}.bias"
                                               for p in ("q_proj", "k_proj", "v_proj")]
    assert keymap.deepseek_to_hf_keys("vision_model.vision_tower.attn_pool.kv.weight") is None
    assert keymap.deepseek_to_hf_keys("gen_vision_model.quantize.codebook_used") is None
    with pytest.raises(keymap.UnknownKeyError, match="gen_head.extra.weight"):
        keymap.deepseek_to_hf_keys("gen_head.extra.weight")
    pos = "vision_model.vision_tower.pos_embed"
    state = keymap.deepseek_to_hf_state({qkv: torch.arange(6.0), pos: torch.zeros(1, 4, 2)})
    assert state["model.vision_model.encoder.layers.2.self_attn.k_proj.bias"].tolist() == [2.0, 3.0]
    assert state["model.vision_model.embeddings.position_embedding.weight"].shape == (4, 2)


def test_every_tiny_key_maps_back(bundle):
    for key in bundle.model.state_dict():
        original = keymap.hf_to_deepseek_key(key)
        assert key in keymap.deepseek_to_hf_keys(original)


# ---------------------------------------------------------------------------------------------------- strictness
def _edit_bin(path, edit):
    state = torch.load(path, weights_only=True)
    edit(state)
    torch.save(state, path)


def _edit_safetensors(path, edit):
    state = load_file(str(path))
    edit(state)
    save_file(state, str(path))


@pytest.mark.parametrize("layout", ["hf", "deepseek"])
def test_missing_key_is_named(bundle, tmp_path, layout):
    if layout == "hf":
        write_hf_layout(bundle, tmp_path)
        _edit_safetensors(tmp_path / "model.safetensors", lambda s: s.pop("model.generation_head.vision_head.bias"))
        name = "model.generation_head.vision_head.bias"
    else:
        write_deepseek_layout(bundle, tmp_path)
        _edit_bin(tmp_path / "pytorch_model.bin", lambda s: s.pop("gen_head.vision_head.bias"))
        name = r"gen_head.vision_head.bias \(transformers: model.generation_head.vision_head.bias\)"
    with pytest.raises(CheckpointError, match=f"missing keys: {name}"):
        load_janus(tmp_path)


@pytest.mark.parametrize("layout", ["hf", "deepseek"])
def test_misshaped_key_is_named(bundle, tmp_path, layout):
    if layout == "hf":
        write_hf_layout(bundle, tmp_path)
        _edit_safetensors(tmp_path / "model.safetensors",
                          lambda s: s.update({"model.generation_embeddings.weight": torch.zeros(5, 4)}))
        name = "model.generation_embeddings.weight"
    else:
        write_deepseek_layout(bundle, tmp_path)
        _edit_bin(tmp_path / "pytorch_model.bin", lambda s: s.update({"gen_embed.weight": torch.zeros(5, 4)}))
        name = "gen_embed.weight"
    with pytest.raises(CheckpointError, match=rf"{name} has shape \[5, 4\], the config implies \[128, 4\]"):
        load_janus(tmp_path)


@pytest.mark.parametrize("layout", ["hf", "deepseek"])
def test_unexpected_key_is_named(bundle, tmp_path, layout):
    if layout == "hf":
        write_hf_layout(bundle, tmp_path)
        _edit_safetensors(tmp_path / "model.safetensors", lambda s: s.update({"model.extra.weight": torch.zeros(2)}))
        name = "unexpected keys: model.extra.weight"
    else:
        write_deepseek_layout(bundle, tmp_path)
        _edit_bin(tmp_path / "pytorch_model.bin", lambda s: s.update({"gen_head.extra.weight": torch.zeros(2)}))
        name = "unexpected keys: gen_head.extra.weight"
    with pytest.raises(ValueError, match=name):
        load_janus(tmp_path)


def test_fused_qkv_with_a_wrong_shape_is_named(bundle, tmp_path):
    write_deepseek_layout(bundle, tmp_path)
    key = "vision_model.vision_tower.blocks.0.attn.qkv.weight"
    _edit_bin(tmp_path / "pytorch_model.bin", lambda s: s.update({key: torch.zeros(3 * 8, 16)}))
    with pytest.raises(CheckpointError, match=rf"{key} has shape \[8, 16\], the config implies \[16, 16\]"):
        load_janus(tmp_path)


def test_tied_config_with_a_distinct_lm_head_loads_untied(bundle, tmp_path, caplog):
    """JanusConfig ties lm_head by default; Janus-Pro's LLM has its own. The stored lm_head must win."""
    write_hf_layout(bundle, tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["tie_word_embeddings"] = True
    (tmp_path / "config.json").write_text(json.dumps(config))
    with caplog.at_level("WARNING"):
        loaded = load_janus(tmp_path)
    assert "untied" in caplog.text
    assert torch.equal(loaded.model.lm_head.weight, bundle.model.lm_head.weight)
    assert not torch.equal(loaded.model.lm_head.weight, loaded.model.get_input_embeddings().weight)


def test_tied_config_with_an_equal_lm_head_loads_tied(bundle, tmp_path):
    write_hf_layout(bundle, tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["tie_word_embeddings"] = True
    (tmp_path / "config.json").write_text(json.dumps(config))
    embed = "model.language_model.embed_tokens.weight"
    _edit_safetensors(tmp_path / "model.safetensors", lambda s: s.update({"lm_head.weight": s[embed].clone()}))
    loaded = load_janus(tmp_path)
    assert loaded.model.lm_head.weight is loaded.model.get_input_embeddings().weight


def test_missing_files_and_unknown_layout(bundle, tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_janus(tmp_path / "nowhere")
    write_hf_layout(bundle, tmp_path)
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="no weights in"):
        load_janus(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(ValueError, match="model_type='llama'"):
        load_janus(tmp_path)


def test_deepseek_config_inconsistencies_are_rejected(bundle):
    config = keymap.hf_config_to_deepseek(bundle.model.config)
    config["gen_head_config"]["params"]["image_token_size"] += 1
    with pytest.raises(ValueError, match="image_token_size"):
        keymap.deepseek_config_to_hf(config, bundle.tokenizer)
