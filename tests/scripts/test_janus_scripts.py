"""The Janus-Pro recipes end to end on tiny models: scripts/generate.py with model=janus_pro_7b (+ semantic CoT saved
beside every image, the folder still a GenEval folder), scripts/janus_grid.py, and scripts/train_janus.py (killed and
resumed to the same weights)."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from PIL import Image

from eval.geneval.layout import discover
from eval.shapes.data import build_suite, write_prompt_files
from eval.shapes.janus import janus_words
from janus.checkpoint import save_hf
from janus.tiny import build_tiny_janus
from tests.helpers import REPO_ROOT

CONFIGS = REPO_ROOT / "configs"


def recipe(name: str):
    spec = importlib.util.spec_from_file_location(f"test_recipe_{name}", REPO_ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_recipe(name: str, overrides: list[str]) -> Path:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose(config_name=name, overrides=overrides)
    GlobalHydra.instance().clear()
    return recipe(name).run(cfg)


@pytest.fixture(scope="module")
def prompts(tmp_path_factory):
    """Two shapes-world eval prompts as GenEval metadata (+ class names)."""
    suite = build_suite("shapes32")
    out = tmp_path_factory.mktemp("prompts")
    metadata = write_prompt_files(out, suite.eval[:2], suite.config.world)
    return metadata, out / "object_names.txt", suite


@pytest.fixture(scope="module")
def janus_dir(prompts, tmp_path_factory):
    """A tiny random Janus-Pro in transformers' layout whose tokenizer covers the shapes prompts."""
    world = prompts[2].config.world
    bundle = build_tiny_janus(janus_words(world.shapes, world.colors), seed=0)
    return save_hf(bundle, tmp_path_factory.mktemp("janus"))


def janus_overrides(janus_dir, cot=True):
    return ["model=janus_pro_7b", f"model.bundle.directory={janus_dir}", "model.bundle.dtype=float32",
            "model.sampling.rows_per_step=1", "device=cpu", "threads=1",
            *(["+cot@model.cot=t2i_r1", "model.cot.max_new_tokens=4"] if cot else [])]


def test_generate_writes_the_cot_beside_each_image_and_stays_a_geneval_folder(prompts, janus_dir, tmp_path):
    metadata, class_names, _ = prompts
    run = run_recipe("generate", [*janus_overrides(janus_dir), f"prompts={metadata}", f"class_names={class_names}",
                                  "images_per_prompt=2", "batch_size=3", f"run_dir={tmp_path / 'run'}"])
    folders = discover(run / "images", ["circle", "square", "triangle"], expected_images=2)
    assert len(folders) == 2
    for folder in folders:
        assert [p.name for p in folder.images] == ["0000.png", "0001.png"]  # the .cot.txt files are not samples
        for k in range(2):
            cot = (folder.path / "samples" / f"{k:04d}.cot.txt").read_text()
            assert cot.endswith("\n") and cot.strip()
    # the same command without a CoT block writes no .cot.txt
    plain = run_recipe("generate", [*janus_overrides(janus_dir, cot=False), f"prompts={metadata}",
                                    f"class_names={class_names}", "images_per_prompt=1", f"run_dir={tmp_path / 'p'}"])
    assert not list((plain / "images").rglob("*.cot.txt")) and list((plain / "images").rglob("0000.png"))


def test_janus_grid_captions_every_image_with_its_cot(prompts, janus_dir, tmp_path):
    metadata, class_names, _ = prompts
    run = run_recipe("janus_grid", [*janus_overrides(janus_dir), f"prompts={metadata}", f"class_names={class_names}",
                                    "images_per_prompt=3", "cell_size=64", "font_size=12", f"run_dir={tmp_path}/g"])
    records = [json.loads(line) for line in (run / "cots.jsonl").read_text().splitlines()]
    assert [(r["index"], r["sample"]) for r in records] == [(i, k) for i in range(2) for k in range(3)]
    assert all(isinstance(r["cot"], str) for r in records)
    grid = Image.open(run / "grid.png")
    assert grid.width == 8 + 3 * (64 + 8) and grid.height > 2 * (64 + 2 * 16)


def test_generate_rejects_unknown_janus_sampling_and_cot_keys(prompts, janus_dir, tmp_path):
    from common.validate import ConfigError

    metadata, class_names, _ = prompts
    with pytest.raises(ConfigError, match="num_inference_steps"):
        run_recipe("generate", [*janus_overrides(janus_dir), f"prompts={metadata}", f"class_names={class_names}",
                                f"run_dir={tmp_path}/a",
                                "+model.sampling.num_inference_steps=12"])
    with pytest.raises(ConfigError, match="temprature"):
        run_recipe("generate", [*janus_overrides(janus_dir), f"prompts={metadata}", f"class_names={class_names}",
                                f"run_dir={tmp_path}/b",
                                "+model.cot.temprature=1.0"])
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()  # refused before writing anything


TRAIN = ["+experiment=shapes/janus", "dataset.source=split", "dataset.images_per_prompt=1", "dataset.images_per_tag=0",
         "model.bundle.hidden_size=32", "model.bundle.num_attention_heads=2", "model.bundle.intermediate_size=64",
         "model.bundle.num_hidden_layers=1", "per_device_batch_size=4", "max_steps=3", "checkpoint_every=1",
         "lr_scheduler.warmup_steps=1", "log_every=1"]


def train(run_dir, *extra, expect_rc=0):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    proc = subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "train_janus.py"), *TRAIN, f"run_dir={run_dir}",
                           *extra], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == expect_rc, proc.stderr[-3000:]


def test_train_janus_killed_and_resumed_gives_the_same_weights(tmp_path):
    from safetensors.torch import load_file

    train(tmp_path / "whole")
    train(tmp_path / "killed", "debug_exit_after_step=2", expect_rc=17)
    assert not (tmp_path / "killed" / "final").exists()
    train(tmp_path / "killed")
    a = load_file(str(tmp_path / "whole" / "final" / "model.safetensors"))
    b = load_file(str(tmp_path / "killed" / "final" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    metrics = [json.loads(line) for line in (tmp_path / "whole" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1, 2, 3] and all(m["train/text_nll"] >= 0 for m in metrics)
    # the plans it learned from are the rule's, written from the rendered scenes
    examples = [json.loads(line) for line in (tmp_path / "whole" / "data" / "examples.jsonl").read_text().splitlines()]
    assert all(" at the " in e["plan"] or " on the " in e["plan"] or " in the center" in e["plan"] for e in examples)
