"""A tiny world every catalogue test runs the recipes in (not a test module): prompts, a saved tiny Show-o bundle,
DPO pairs, a tokenized t2i dataset and a GenEval-layout image folder of the shapes world, plus the recipe configs.

Recipes are scripts (never imported by the library); :func:`recipe` loads ``scripts/<name>.py`` as a module so its
``run(cfg)`` can be called in-process with a config composed exactly as the command line would compose it.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import torch
from omegaconf import DictConfig, open_dict

from tests.helpers import TINY_VQ, compose_entry, load_recipe

REPO = Path(__file__).resolve().parents[2]
PROMPTS = ["a red circle", "a blue square", "a red square", "a blue circle", "two red circle", "a blue triangle"]
SCRIPTS = {"quickstart": REPO / "scripts" / "shapes" / "quickstart.py"}
# a resumed or repeated run rewrites these: sessions / creation time and environment, never the results
VOLATILE = ("run.json",)


@dataclass(frozen=True)
class World:
    root: Path
    prompts: Path      # text file, one prompt per line
    bundle: Path       # ShowoBundle.save_pretrained of a tiny Show-o (showo/, tokenizer/, vq/)
    pairs: Path        # DPO pairs JSONL (dpo.data.save_pairs)
    t2i: Path          # tokenized text-to-image dataset (showo.data.write_tokenized_dataset)
    metadata: Path     # GenEval metadata of the shapes world (6 prompts, one per task)
    class_names: Path
    images: Path       # rendered ground truth of ``metadata`` in the GenEval layout, 2 images per prompt


def build_world(root: Path) -> World:
    from dpo.data import save_pairs
    from dpo.toy import toy_pairs
    from eval.geneval.prompts import load_class_names, load_prompts
    from eval.shapes.data import build_suite
    from eval.shapes.render import ShapesWorld
    from eval.shapes.rows import ground_truth_images, write_prompt_sets
    from showo.data import write_tokenized_dataset
    from showo.factory import build_tiny_showo

    root.mkdir(parents=True, exist_ok=True)
    (root / "prompts.txt").write_text("\n".join(PROMPTS) + "\n")
    bundle = build_tiny_showo(sorted({w for p in PROMPTS for w in p.split()}), vq=TINY_VQ, seed=0)
    bundle.save_pretrained(root / "bundle")
    save_pairs(root / "pairs.jsonl", toy_pairs(bundle.layout, PROMPTS[:4], 8, seed=0))
    codes = torch.randint(0, 64, (len(PROMPTS), 16), generator=torch.Generator().manual_seed(0))
    write_tokenized_dataset(root / "t2i", PROMPTS, codes)
    paths = write_prompt_sets(root / "geneval", build_suite("shapes32"), prompts_per_task=1)
    specs = load_prompts(paths["metadata"], load_class_names(paths["class_names"]))
    ground_truth_images(specs, ShapesWorld(), root / "images", images_per_prompt=2)
    return World(root, root / "prompts.txt", root / "bundle", root / "pairs.jsonl", root / "t2i", paths["metadata"],
                 paths["class_names"], root / "images")


@cache
def recipe(name: str):
    """``scripts/<name>.py`` (or the quickstart) as a module."""
    return load_recipe(SCRIPTS.get(name, name))


# the entry config of each recipe, and overrides that make it run in a second or two on the tiny world
CONFIG = {"iterative_dpo": "train_dpo"}


def base_overrides(name: str, w: World) -> list[str]:
    fast = {
        "generate": ["model=showo_tiny", f"prompts={w.prompts}", "images_per_prompt=1", "device=cpu",
                     "model.sampling.num_inference_steps=2"],
        "run_search": ["model=showo_tiny", "search=baseline", f"prompts={w.prompts}", "images_per_prompt=1",
                       "device=cpu", "model.sampling.num_inference_steps=2"],
        "train_showo": [f"dataset.directory={w.t2i}", "max_steps=4", "per_device_batch_size=2", "checkpoint_every=2",
                        "lr_scheduler.warmup_steps=0"],
        "train_dpo": ["model=showo_bundle", f"model.bundle.directory={w.bundle}", f"data.pairs={w.pairs}",
                      "train.mixed_precision=no", "train.global_batch_size=4", "train.epochs=1"],
        "iterative_dpo": ["model=showo_bundle", f"model.bundle.directory={w.bundle}", f"iterative.prompts={w.prompts}",
                          "+iterative.judge={_target_: dpo.toy.MeanChannelJudge}", "train.mixed_precision=no",
                          "model.sampling.num_inference_steps=2", "iterative.candidates_per_prompt=2"],
        "eval_geneval": [f"image_dir={w.images}", f"eval.metadata={w.metadata}", "eval.images_per_prompt=2",
                         "eval.batch_size=2"],
        "eval_compbench": [f"image_dir={w.images}"],
        "eval_wise": [f"image_dir={w.images}"],
        "train_magvit": ["max_steps=1", "batch_size=2"],
        "train_judge": [],
        "quickstart": [],
        "build_judge_data": [],
        "build_parm_data": ["+experiment=shapes/parm_data"],
        "judge_quality": [f"run={w.root}"],
        "parm_pruning": [f"run={w.root}"],
        "pretrain_judge_vision": ["model_dir=unused", "+experiment=shapes/judge_vision"],
    }
    return ["threads=1", *fast[name]]


def config(name: str, w: World, run_dir: Path, overrides=()) -> DictConfig:
    """The recipe's config on the tiny world; eval_geneval gets the shapes world's exact detector and colour
    classifier (no weights), as the quickstart evaluates its rows."""
    cfg = compose_entry(CONFIG.get(name, name), [*base_overrides(name, w), f"run_dir={run_dir}", *overrides])
    if name == "eval_geneval":
        with open_dict(cfg):
            cfg.detector = {"_target_": "eval.shapes.detector.ShapesDetector"}
            cfg.eval.color_classifier = {"_target_": "eval.shapes.detector.ShapesColorClassifier"}
    return cfg


def tree(root: Path, skip=VOLATILE) -> dict[str, bytes]:
    """Every file under ``root`` (hidden ones included) by relative path -> bytes, except ``skip`` names."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(Path(root).rglob("*"))
            if p.is_file() and p.name not in skip}


def summary_scores(path: Path) -> dict:
    """A summary document without its creation time, environment and run directory (what differs between two
    sessions of the same run, or two runs of the same config in two directories)."""
    doc = json.loads(Path(path).read_text())
    doc.get("config", {}).pop("run_dir", None)
    return {k: v for k, v in doc.items() if k not in ("created", "environment", "git")}


def child_env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled", "PYTHONPATH": str(REPO)}
