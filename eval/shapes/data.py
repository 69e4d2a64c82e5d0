"""Data of the shapes-world recipes: the suite of a ``configs/data`` entry, rendered pixels, prompt files.

* :func:`load_data_config` composes ``configs/data/<name>.yaml`` (with its defaults) into a ``ShapesSuiteConfig``;
* :func:`render_pixels` renders scenes of suite lines (a number per line) into one ``[M, 3, H, W]`` tensor in
  ``[-1, 1]`` (the MAGVIT-v2 input convention), image ``k`` of line ``i`` from ``scene_seed(seed, i, k)``;
* :func:`write_prompt_files` writes a split as GenEval metadata (``evaluation_metadata.jsonl`` + ``object_names.txt``)
  so the generic recipes (``scripts/generate.py``, ``scripts/search.py``) read it like the real benchmark.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from PIL import Image

from common.io import atomic_write_text
from eval.shapes.render import GroundTruthObject, ShapesWorld, render_scene, scene_seed
from eval.shapes.suite import ShapesSuite, ShapesSuiteConfig, build_shapes_suite
from showo.magvit import image_transform

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
METADATA_NAME = "evaluation_metadata.jsonl"
CLASS_NAMES_NAME = "object_names.txt"


def load_data_config(name: str = "shapes32", config_dir: str | os.PathLike = CONFIG_DIR) -> ShapesSuiteConfig:
    """``configs/data/<name>.yaml`` composed with its defaults and instantiated (a typo fails with Hydra's message)."""
    config_dir = Path(config_dir)
    if not (config_dir / "data" / f"{name}.yaml").is_file():
        options = sorted(p.stem for p in (config_dir / "data").glob("*.yaml"))
        raise FileNotFoundError(f"data config {config_dir / 'data' / (name + '.yaml')} not found; options: {options}")
    if GlobalHydra.instance().is_initialized():  # inside a Hydra app: its search path is this configs/ folder
        return instantiate(compose(config_name=f"data/{name}").data)
    with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
        cfg = compose(config_name=f"data/{name}").data
    return instantiate(cfg)


def load_world(name: str = "shapes32") -> ShapesWorld:
    """The world of ``configs/data/<name>.yaml`` (what the oracle judge and the detector need)."""
    return load_data_config(name).world


def build_suite(name: str = "shapes32") -> ShapesSuite:
    return build_shapes_suite(load_data_config(name))


def to_pixels(images: Sequence[Image.Image]) -> torch.Tensor:
    """Square PIL images of one size -> ``[M, 3, S, S]`` float32 in ``[-1, 1]``, through Show-o's own
    pre-processing (:func:`showo.magvit.image_transform`; at the canvas size its resize and crop change nothing)."""
    return torch.stack([image_transform(im, im.size[0]) for im in images])


def render_pixels(lines: Sequence[dict], world: ShapesWorld, images_per_prompt: int | Sequence[int], seed: int
                  ) -> tuple[list[str], torch.Tensor]:
    """(prompts, pixels ``[sum of images per line, 3, S, S]``): line ``i``'s scenes ``k = 0, 1, ...`` in order
    (``images_per_prompt``: one count for every line, or one per line as :func:`eval.shapes.suite.images_per_line`)."""
    prompts, pixels, _ = render_pixels_and_objects(lines, world, images_per_prompt, seed)
    return prompts, pixels


def render_pixels_and_objects(lines: Sequence[dict], world: ShapesWorld, images_per_prompt: int | Sequence[int],
                              seed: int) -> tuple[list[str], torch.Tensor, list[list[GroundTruthObject]]]:
    """:func:`render_pixels` plus every scene's drawn objects (what the tiny Janus' plans are written from)."""
    counts = [images_per_prompt] * len(lines) if isinstance(images_per_prompt, int) else list(images_per_prompt)
    if len(counts) != len(lines):
        raise ValueError(f"{len(counts)} image counts for {len(lines)} lines")
    prompts, images, objects = [], [], []
    for i, (line, count) in enumerate(zip(lines, counts)):
        for k in range(count):
            image, objs = render_scene(line, scene_seed(seed, i, k), world)
            images.append(image)
            objects.append(objs)
            prompts.append(line["prompt"])
    return prompts, to_pixels(images), objects


def write_prompt_files(directory: str | os.PathLike, lines: Sequence[dict], world: ShapesWorld) -> Path:
    """GenEval metadata of ``lines`` + the class-name file; returns the metadata path."""
    directory = Path(directory)
    atomic_write_text(directory / CLASS_NAMES_NAME, "".join(f"{s}\n" for s in world.shapes))
    atomic_write_text(directory / METADATA_NAME, "".join(json.dumps(line) + "\n" for line in lines))
    return directory / METADATA_NAME
