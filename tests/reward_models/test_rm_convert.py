"""LLaVA-NeXT -> transformers conversion: a synthetic LLaVA-NeXT checkpoint converts, loads strictly, same logits."""
from __future__ import annotations

import json
import runpy
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import save_file
from transformers import AutoProcessor, LlavaOnevisionForConditionalGeneration

from reward_models.convert import ConvertOptions, convert_llava_next, rename_llava_next_keys
from reward_models.tiny import build_tiny_llava_onevision

REPO = Path(__file__).resolve().parents[2]

# Hand-written inverse of the documented mapping (transformers module name -> LLaVA-NeXT name), applied in order.
TO_LLAVA_NEXT = (
    ("model.vision_tower.", "model.vision_tower.vision_tower.vision_model."),
    ("model.multi_modal_projector.linear_1.", "model.mm_projector.0."),
    ("model.multi_modal_projector.linear_2.", "model.mm_projector.2."),
    ("model.image_newline", "model.image_newline"),
    ("model.language_model.", "model."),
    ("lm_head.", "lm_head."),
)


def _to_llava_next(name: str) -> str:
    for hf, ln in TO_LLAVA_NEXT:
        if name.startswith(hf):
            return ln + name[len(hf):]
    raise AssertionError(f"unmapped test key {name}")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("convert")
    hf_dir = build_tiny_llava_onevision(root / "hf")
    model = LlavaOnevisionForConditionalGeneration.from_pretrained(hf_dir).eval()
    src = root / "llava_next"
    src.mkdir()
    state = {_to_llava_next(k): v.contiguous() for k, v in model.state_dict().items()}
    # LLaVA-NeXT shards: split the weights over two files with an index, as its trainer writes them.
    keys = sorted(state)
    shards = {"model-00001-of-00002.safetensors": keys[::2], "model-00002-of-00002.safetensors": keys[1::2]}
    weight_map = {}
    for name, part in shards.items():
        save_file({k: state[k] for k in part}, str(src / name))
        weight_map.update({k: name for k in part})
    (src / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    text = model.config.text_config
    config = {
        "architectures": ["LlavaQwenForCausalLM"],
        "model_type": "llava_qwen",
        "hidden_size": text.hidden_size,
        "intermediate_size": text.intermediate_size,
        "num_hidden_layers": text.num_hidden_layers,
        "num_attention_heads": text.num_attention_heads,
        "num_key_value_heads": text.num_key_value_heads,
        "vocab_size": text.vocab_size,
        "rms_norm_eps": text.rms_norm_eps,
        "rope_theta": 10000.0,
        "max_position_embeddings": text.max_position_embeddings,
        "tie_word_embeddings": False,
        "hidden_act": "silu",
        "mm_vision_tower": "google/siglip-so400m-patch14-384",
        "mm_projector_type": "mlp2x_gelu",
        "mm_hidden_size": model.config.vision_config.hidden_size,
        "mm_vision_select_layer": -2,
        "mm_patch_merge_type": "spatial_unpad",
        "image_aspect_ratio": "anyres_max_9",
        "image_grid_pinpoints": [[32, 32]],
        "torch_dtype": "float32",
    }
    (src / "config.json").write_text(json.dumps(config))
    AutoProcessor.from_pretrained(hf_dir).tokenizer.save_pretrained(src)
    return hf_dir, model, src, root


def test_rename_maps_every_documented_prefix():
    w = torch.zeros(1)
    out = rename_llava_next_keys(
        {
            "model.vision_tower.vision_tower.vision_model.encoder.layers.3.mlp.fc1.weight": w,
            "model.vision_tower.vision_tower.vision_model.head.attention.in_proj_weight": w,
            "model.mm_projector.0.weight": w,
            "model.mm_projector.2.bias": w,
            "model.image_newline": w,
            "model.layers.0.self_attn.q_proj.weight": w,
            "model.embed_tokens.weight": w,
            "lm_head.weight": w,
        }
    )
    assert sorted(out) == sorted(
        [
            "model.vision_tower.encoder.layers.3.mlp.fc1.weight",
            "model.multi_modal_projector.linear_1.weight",
            "model.multi_modal_projector.linear_2.bias",
            "model.image_newline",
            "model.language_model.layers.0.self_attn.q_proj.weight",
            "model.language_model.embed_tokens.weight",
            "lm_head.weight",
        ]
    )
    with pytest.raises(ValueError, match="vision_resampler"):
        rename_llava_next_keys({"model.vision_resampler.x": w})


def test_converted_loads_strictly_with_identical_logits(tiny):
    hf_dir, reference, src, root = tiny
    dst = convert_llava_next(src, root / "converted", ConvertOptions(vision_num_attention_heads=2))
    converted, info = LlavaOnevisionForConditionalGeneration.from_pretrained(dst, output_loading_info=True)
    assert all(not v for v in info.values()), info
    config = converted.config
    assert config.vision_config.num_hidden_layers == reference.config.vision_config.num_hidden_layers
    assert config.vision_config.image_size == 32 and config.vision_config.patch_size == 8
    assert config.image_token_index == reference.config.image_token_index
    for field in ("hidden_size", "num_key_value_heads", "rms_norm_eps", "vocab_size", "num_hidden_layers"):
        assert getattr(config.text_config, field) == getattr(reference.config.text_config, field), field

    processor = AutoProcessor.from_pretrained(dst)
    image = Image.new("RGB", (40, 24), (200, 30, 90))
    messages = [{"role": "user", "content": "<image> This image is generated by a prompt: a red car."}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert text.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>")
    # SigLIP normalises with mean = std = 0.5 (the tiny reference processor keeps transformers' CLIP defaults).
    assert list(processor.image_processor.image_mean) == [0.5, 0.5, 0.5]
    inputs = processor(images=[image], text=[text], return_tensors="pt")
    ref_ids = AutoProcessor.from_pretrained(hf_dir)(images=[image], text=[text], return_tensors="pt")["input_ids"]
    assert torch.equal(inputs["input_ids"], ref_ids)
    converted_state = converted.state_dict()
    for key, value in reference.state_dict().items():  # the conversion itself: every tensor bit for bit
        assert torch.equal(converted_state[key], value), key
    with torch.no_grad():
        got = converted.eval()(**inputs).logits
        want = reference(**inputs).logits
    assert got.shape == (1, inputs["input_ids"].shape[1], reference.config.text_config.vocab_size)
    # the same weights through the converted config (vision heads, image grid): float32 logits agree to rounding;
    # 1e-5 is far below what a mis-mapped tensor or a wrong config value changes
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert torch.equal(got.argmax(-1), want.argmax(-1))  # what a yes/no judge reads: the preferred next token

    # The converted directory is what the project's judges load.
    from reward_models.lmm_judge import LMMYesNoJudge

    out = LMMYesNoJudge(dst).score(["a red car"], [image])
    assert out.scores.shape == (1,) and 0.0 <= out.scores.item() <= 1.0


def test_errors_name_missing_files(tmp_path, tiny):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        convert_llava_next(tmp_path / "nowhere", tmp_path / "out")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="config.json"):
        convert_llava_next(empty, tmp_path / "out")
    (empty / "config.json").write_text(json.dumps({"model_type": "llava_qwen"}))
    with pytest.raises(FileNotFoundError, match="no weights"):
        convert_llava_next(empty, tmp_path / "out")
    (empty / "config.json").write_text(json.dumps({"model_type": "llava"}))
    with pytest.raises(ValueError, match="model_type"):
        convert_llava_next(empty, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_script_reports_missing_source(tmp_path, capsys):
    # The script's main() in this process (a subprocess would spend ~10 s importing transformers again).
    script = runpy.run_path(str(REPO / "scripts" / "convert_llava_next.py"), run_name="convert_llava_next")
    assert script["main"]([str(tmp_path / "missing"), str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert "missing" in err and "not found" in err


def test_script_converts(tiny, capsys):
    _, _, src, root = tiny
    script = runpy.run_path(str(REPO / "scripts" / "convert_llava_next.py"), run_name="convert_llava_next")
    dst = root / "via_script"
    assert script["main"]([str(src), str(dst), "--vision-heads", "2", "--dtype", "bfloat16"]) == 0
    config = json.loads((dst / "config.json").read_text())
    assert config["model_type"] == "llava_onevision"
    assert config["vision_config"]["num_attention_heads"] == 2
    model = LlavaOnevisionForConditionalGeneration.from_pretrained(dst)
    assert model.lm_head.weight.dtype == torch.bfloat16
    assert script["main"]([str(src), str(dst)]) == 1  # refuses to overwrite
    assert "already exists" in capsys.readouterr().err


def test_tokenizer_without_image_tokens_gets_them(tmp_path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from reward_models.convert import _build_tokenizer

    # LLaVA-NeXT keeps Qwen2's tokenizer (images are a -200 sentinel there): the converter must add the tokens.
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    bpe.train_from_iterator(["hello world yes no"] * 10, trainer=trainer)
    base = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    base.save_pretrained(tmp_path)
    tokenizer = _build_tokenizer(tmp_path, vocab_size=len(base) + 8)  # Qwen2 pads its embedding table
    assert tokenizer.convert_tokens_to_ids("<image>") == len(base)
    assert tokenizer.convert_tokens_to_ids("<video>") == len(base) + 1
    assert tokenizer.encode("<image> hi", add_special_tokens=False)[0] == len(base)
    with pytest.raises(ValueError, match="does not fit the embedding table"):
        _build_tokenizer(tmp_path, vocab_size=len(base))
