"""Show-o stand-ins (showo/standin.py) in the official layouts load through the real-scale config, strictly."""
from __future__ import annotations

import json

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from common.recipe import build_generator
from common.seeding import generators
from showo.standin import STANDIN_MAGVIT, build_phi_tokenizer, build_standin_magvit, build_standin_showo
from tests.helpers import REPO_ROOT


@pytest.fixture(scope="module")
def standins(tmp_path_factory):
    root = tmp_path_factory.mktemp("standin")
    build_phi_tokenizer(root / "phi-1_5", ["a photo of a red dog", "two blue benches"] * 3)
    build_standin_magvit(root / "magvitv2")
    build_standin_showo(root / "show-o", root / "phi-1_5")
    return root


def test_files_are_laid_out_like_the_downloads(standins):
    assert sorted(p.name for p in (standins / "magvitv2").iterdir()) == ["config.json", "pytorch_model.safetensors"]
    assert json.loads((standins / "magvitv2" / "config.json").read_text())["_class_name"] == "MAGVITv2"
    config = json.loads((standins / "show-o" / "config.json").read_text())
    assert config["_class_name"] == "Showo" and config["num_vq_tokens"] == 64
    assert config["codebook_size"] == 2 ** STANDIN_MAGVIT.codebook_dim
    assert config["vocab_size"] == config["llm_vocab_size"] + 10 + config["codebook_size"] + 1
    assert (standins / "show-o" / "pytorch_model.safetensors").is_file()
    tokenizer = json.loads((standins / "phi-1_5" / "tokenizer_config.json").read_text())
    assert tokenizer["bos_token"] == tokenizer["eos_token"] == "<|endoftext|>"


def test_showo_256_config_loads_them_with_the_checkpoints_layout(standins, monkeypatch):
    monkeypatch.setenv("SHOWO_CKPT", str(standins / "show-o"))
    monkeypatch.setenv("MAGVIT_CKPT", str(standins / "magvitv2"))
    monkeypatch.setenv("PHI_TOKENIZER", str(standins / "phi-1_5"))
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(REPO_ROOT / "configs"), version_base="1.3"):
        cfg = compose("run_search", overrides=["prompts=p", "device=cpu"])
    bundle, pipe, sampling = build_generator(cfg.model)
    assert sampling == {"guidance_scale": 1.75, "num_inference_steps": 18}
    assert bundle.layout.num_image_tokens == 64 and bundle.layout.text_len == 129  # grid from config.json
    assert bundle.tokenizer("a photo of a zebra", add_special_tokens=False)["input_ids"]  # byte-level: no unknowns
    assert bundle.layout.bos_id == bundle.tokenizer.bos_token_id
    out = pipe(["a photo of a dog"] * 2, generator=generators([0, 1]), **{**sampling, "num_inference_steps": 4})
    assert out.images[0].size == (32, 32) and not torch.equal(out.tokens[0], out.tokens[1])
