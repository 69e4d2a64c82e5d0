"""The shapes world's tiny Janus-Pro: transformers' Janus at toy size drawing the shapes MAGVIT-v2's codes.

* :func:`build_shapes_janus`: a freshly initialised model (``configs/model/janus_shapes_init.yaml``, the starting
  point of ``scripts/train_janus.py``): a Llama of ~4 x 192 like the tiny Show-o, a word-level tokenizer that covers
  every shapes prompt, judge reason and plan word, T2I-R1's reasoning prompt and Janus' special tokens; its image
  tokens are the 8 x 8 codes of the committed MAGVIT-v2 (1,024 entries), decoded by that MAGVIT-v2 through
  :func:`showo.magvit.decode_codes`, so the judges see the same kind of images as the tiny Show-o's. The Janus VQ
  model inside ``JanusForConditionalGeneration`` is a small random one that is never used (transformers' class needs
  one).
* :func:`load_shapes_janus`: a trained checkpoint (transformers' Janus layout, e.g. ``checkpoints/shapes/janus``)
  plus that MAGVIT-v2;
* :func:`planned_training_data`: the training triples (prompt, plan, codes) of rendered scenes; the plan is written
  from each scene by :func:`eval.shapes.plans.scene_plan`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import torch

from eval.shapes.data import render_pixels_and_objects
from eval.shapes.plans import PLAN_WORDS, scene_plan
from eval.shapes.suite import (ShapesSuite, ShapesSuiteConfig, build_shapes_suite, images_per_line, shapes_words,
                               training_lines)
from janus.checkpoint import JanusBundle, load_janus
from janus.layout import JanusLayout
from janus.training import PlannedT2IData
from showo.data import tokenize_images
from showo.magvit import MAGVITv2, decode_codes

PathLike = str | os.PathLike


@dataclass
class MagvitDecoder:
    """Janus codes -> images through the shapes MAGVIT-v2 (the project's one decode path, one image per call)."""

    vq: MAGVITv2
    grid: tuple[int, int]

    def __call__(self, tokens: torch.Tensor, output_type: str = "pil"):
        return decode_codes(self.vq, tokens, self.grid, output_type)


def janus_words(shapes: Sequence[str], colors: Sequence[str], counts: Sequence[int] = (2, 3, 4)) -> list[str]:
    """Every word of a shapes prompt, a judge's reason (:func:`eval.shapes.suite.shapes_words`) and a plan."""
    return sorted({*shapes_words(shapes, colors, counts), *PLAN_WORDS})


def _magvit(vq_directory: PathLike, device) -> MAGVITv2:
    if not Path(vq_directory).is_dir():
        raise FileNotFoundError(f"MAGVIT-v2 directory not found: {vq_directory} (train it with scripts/train_magvit.py)")
    return MAGVITv2.from_pretrained(vq_directory, device=device or "cpu").requires_grad_(False).eval()


def _attach(bundle: JanusBundle, vq: MAGVITv2, source: str) -> JanusBundle:
    side = int(round(vq.config.num_codes ** 0.5))
    lay = bundle.layout
    if lay.grid != (side, side) or lay.codebook_size != vq.config.codebook_size:
        raise ValueError(f"{source}: the Janus draws {lay.grid} codes of {lay.codebook_size}, the MAGVIT-v2 makes "
                         f"{side}x{side} of {vq.config.codebook_size}")
    bundle.decoder = MagvitDecoder(vq, lay.grid)
    return bundle


def build_shapes_janus(vq_directory: PathLike, words: Sequence[str], *, hidden_size: int = 192,
                       num_hidden_layers: int = 4, num_attention_heads: int = 6, intermediate_size: int = 768,
                       embed_dim: int = 8, seed: int = 0, device: Optional[str] = None) -> JanusBundle:
    """A freshly initialised tiny Janus-Pro over the MAGVIT-v2 of ``vq_directory`` (weights drawn as transformers
    initialises them, ``initializer_range`` 0.02, from ``seed``)."""
    from janus.tiny import build_tiny_janus

    vq = _magvit(vq_directory, device)
    side = int(round(vq.config.num_codes ** 0.5))
    upsample = vq.config.resolution // side
    bundle = build_tiny_janus(words, seed=seed, grid=side, codebook_size=vq.config.codebook_size,
                              hidden_size=hidden_size, num_hidden_layers=num_hidden_layers,
                              num_attention_heads=num_attention_heads, intermediate_size=intermediate_size,
                              embed_dim=embed_dim, initializer_range=0.02,
                              vq_channel_multiplier=(1,) * (upsample.bit_length()))
    bundle.model.to(device or "cpu")
    bundle.layout = JanusLayout.from_model_config(bundle.model.config, bundle.tokenizer)
    return _attach(bundle, vq, "build_shapes_janus")


def load_shapes_janus(directory: PathLike, vq_directory: PathLike, *, dtype: Optional[str] = "float32",
                      device: Optional[str] = None) -> JanusBundle:
    """A trained tiny Janus (transformers' layout; stored bfloat16 weights load into float32 by default) with its
    MAGVIT-v2 decoder."""
    bundle = load_janus(directory, dtype=dtype, device=device)
    return _attach(bundle, _magvit(vq_directory, device), str(directory))


def planned_training_data(vq: MAGVITv2, suite: ShapesSuite, *, source: str = "space", images_per_prompt: int = 8,
                          images_per_tag: int = 4096, seed: int = 1000) -> PlannedT2IData:
    """(prompt, plan, codes) of rendered scenes of the training lines (``source`` as
    :func:`eval.shapes.suite.training_lines`: never an eval-split prompt), ``images_per_line`` scenes per line; scene
    ``k`` of line ``i`` from ``scene_seed(seed, i, k)``; the plan written from the scene's objects."""
    lines = training_lines(suite, source)
    counts = images_per_line(lines, images_per_prompt, images_per_tag)
    world = suite.config.world
    prompts, pixels, objects = render_pixels_and_objects(lines, world, counts, seed)
    plans = [scene_plan(objs, world.canvas_size) for objs in objects]
    with torch.no_grad():
        codes = tokenize_images(vq, pixels.to(next(vq.parameters()).device)).cpu()
    return PlannedT2IData(prompts, plans, codes)


def shapes_planned_data(suite: ShapesSuiteConfig, vq_directory: PathLike, *, source: str = "space",
                        images_per_prompt: int = 8, images_per_tag: int = 4096, seed: int = 1000,
                        cache: Optional[PathLike] = None) -> PlannedT2IData:
    """:func:`planned_training_data` of the suite ``suite`` (``configs/dataset/shapes_plans.yaml``). With ``cache`` (a
    folder of the run directory, so its config fingerprint covers these arguments) the triples are read from there
    when present and written there once built (tokenizing ~20k scenes takes minutes on a CPU)."""
    if cache is not None and (Path(cache) / "examples.jsonl").is_file():
        return PlannedT2IData.load(cache)
    data = planned_training_data(_magvit(vq_directory, None), build_shapes_suite(suite), source=source,
                                 images_per_prompt=images_per_prompt, images_per_tag=images_per_tag, seed=seed)
    if cache is not None:
        data.save(cache)
    return data


__all__ = ["MagvitDecoder", "build_shapes_janus", "janus_words", "load_shapes_janus", "planned_training_data", "shapes_planned_data"]
