"""Recipe: pre-train a judge's vision tower on per-patch targets before it learns to judge (issue 13;
``reward_models.vision_pretrain``): the shapes world's from-scratch tiny judge learns what every patch of the
generator's images shows (the exact detector's shape and colour) in minutes, which yes/no answers teach it slowly.

    python scripts/pretrain_judge_vision.py +experiment=shapes/judge_vision run_dir=runs/shapes/judge_vision \\
        judge_data_dir=runs/shapes/judge_data

Reads top to bottom: check settings -> the judge (``init``: a freshly built one, or ``model_dir``) -> the images of
the ``images`` example files (every distinct image once; training lines only: scripts/build_judge_data.py's files)
-> their targets (``labeller``) -> train the tower (``pretrain``) -> ``run_dir/final`` (the whole judge, its tower
replaced) and ``run_dir/metrics.jsonl``. No intermediate checkpoints: the stage takes minutes, and a killed run
leaves no ``final/`` and starts again.
"""
from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import hydra
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from PIL import Image
from transformers import LlavaOnevisionForConditionalGeneration, LlavaOnevisionProcessor

from common.io import atomic_write_text, check_finite_tensors
from common.recipe import check, open_run
from common.validate import ConfigError, Float, Int
from reward_models.data import image_path, read_examples
from reward_models.lmm_judge import check_judge_directory
from reward_models.local_model import load_local, save_local
from reward_models.vision_pretrain import VisionPretrainConfig, judge_pixels, patch_targets, pretrain_vision_tower

SETTINGS = (Int("seed"), Int("pretrain.steps", min=1), Int("pretrain.batch_size", min=1), Float("pretrain.lr", min=0),
            Float("pretrain.val_fraction", min=0, max=0.99), Int("pretrain.log_every", min=1))


def load_judge(directory: str | Path):
    """``(model, processor)`` of a local LLaVA-OneVision judge, float32 on the CPU."""
    processor, model = load_local(LlavaOnevisionForConditionalGeneration, LlavaOnevisionProcessor,
                                  check_judge_directory(directory), dtype=torch.float32, device="cpu")
    return model, processor


def image_paths(files) -> list[Path]:
    """Every distinct image of the example files, in file order."""
    seen: dict[Path, None] = {}
    for file in files:
        for example in read_examples(file):
            seen.setdefault(image_path(file, example.image).resolve(), None)
    if not seen:
        raise ConfigError(f"images: no examples in {list(files)}")
    return list(seen)


def run(cfg: DictConfig) -> Path:
    check(cfg, "pretrain_judge_vision", SETTINGS)
    files = [str(p) for p in cfg.images]
    missing = [p for p in files if not Path(p).is_file()]
    if missing:
        raise ConfigError(f"images: {missing} not found (scripts/build_judge_data.py writes them)")
    config = VisionPretrainConfig(**OmegaConf.to_container(cfg.pretrain, resolve=True), seed=cfg.seed)
    labeller = instantiate(cfg.labeller)
    if cfg.init is None:
        model, processor = load_judge(cfg.model_dir)
    else:
        with tempfile.TemporaryDirectory() as init:
            model, processor = load_judge(instantiate(cfg.init, directory=init))
    vision = model.config.vision_config
    if vision.image_size // vision.patch_size != cfg.data.world.canvas_size // labeller.patch_size:
        raise ConfigError(f"labeller.patch_size = {labeller.patch_size} on {cfg.data.world.canvas_size} px images "
                          f"gives another grid than the tower's {vision.image_size} px / {vision.patch_size} px patches")
    paths = image_paths(files)
    out = open_run(cfg, inputs={f"images.{i}": file for i, file in enumerate(files)}).path
    start = time.perf_counter()
    images = []
    for path in paths:
        with Image.open(path) as image:
            images.append(image.convert("RGB"))
    pixels = judge_pixels(processor, images)
    targets = patch_targets(labeller, images, (vision.image_size // vision.patch_size) ** 2)
    metrics = pretrain_vision_tower(model, pixels, targets, labeller.classes, config, log=lambda step, row: print(
        f"step {step}: " + ", ".join(f"{k} {v:.4g}" for k, v in row.items() if k != "step"), flush=True))
    check_finite_tensors(model.state_dict(), f"{out}: pre-trained judge weights")
    save_local(model, processor, out / "final")
    atomic_write_text(out / "metrics.jsonl", "".join(json.dumps(row) + "\n" for row in metrics))
    print(f"{len(images)} images, {config.steps} steps in {time.perf_counter() - start:.0f} s -> {out / 'final'}")
    return out


if __name__ == "__main__":
    hydra.main(config_path="../configs", config_name="pretrain_judge_vision", version_base="1.3")(run)()
