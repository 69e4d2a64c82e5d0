"""The miniature table's prompt files and reference rows (``scripts/shapes/quickstart.py``).

* :func:`write_prompt_sets`: the eval split as GenEval metadata (``<dir>/evaluation_metadata.jsonl`` +
  ``object_names.txt``; ``prompts_per_task`` keeps the first N lines of each task, the reduced CI setting;
  ``images_per_task`` repeats each task's lines until it has that many images, the balanced eval) and the
  training prompts as text (``<dir>/train_prompts.txt``, the DPO recipes' prompts; same reduction);
* :func:`ground_truth_images`: rendered scenes of every eval prompt (the detector's ceiling, a sanity row);
* :func:`random_code_images`: uniformly random codes decoded by the tokenizer (the floor).

Image ``k`` of prompt ``i`` is drawn from its own seed, so every row is a function of its arguments alone.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import torch

from common.io import atomic_write_text
from common.seeding import image_seed
from eval.geneval.layout import write_prompt_folder
from eval.geneval.prompts import PromptSpec
from eval.shapes.data import CLASS_NAMES_NAME, METADATA_NAME, write_prompt_files
from eval.shapes.render import ShapesWorld, render_scene, scene_seed
from eval.shapes.suite import ShapesSuite, first_per_task, repeat_per_task
from showo.magvit import MAGVITv2, decode_codes

TRAIN_PROMPTS_NAME = "train_prompts.txt"


def write_prompt_sets(directory: str | os.PathLike, suite: ShapesSuite, prompts_per_task: int | None = None,
                      images_per_task: int | None = None, images_per_prompt: int = 4) -> dict[str, Path]:
    """Eval-split metadata + class names + training prompts; returns their paths (``metadata``, ``class_names``,
    ``train_prompts``). ``images_per_task``: every eval line repeated so that each task gets at least that many
    images at ``images_per_prompt`` per line (:func:`eval.shapes.suite.repeat_per_task`; the training prompts are
    not repeated)."""
    directory = Path(directory)
    lines = repeat_per_task(first_per_task(suite.eval, prompts_per_task), images_per_task, images_per_prompt)
    metadata = write_prompt_files(directory, lines, suite.config.world)
    train = first_per_task(suite.train, prompts_per_task)
    atomic_write_text(directory / TRAIN_PROMPTS_NAME, "".join(line["prompt"] + "\n" for line in train))
    return {"metadata": metadata, "class_names": directory / CLASS_NAMES_NAME,
            "train_prompts": directory / TRAIN_PROMPTS_NAME}


def ground_truth_images(specs: Sequence[PromptSpec], world: ShapesWorld, out: str | os.PathLike,
                        images_per_prompt: int, seed: int = 0) -> Path:
    """Rendered scenes of every prompt in the GenEval layout (prompt folders already there are kept)."""
    out = Path(out)
    for spec in specs:
        if not (out / f"{spec.index:05d}" / "metadata.jsonl").is_file():
            images = [render_scene(spec.raw, scene_seed(seed, spec.index, k), world)[0] for k in range(images_per_prompt)]
            write_prompt_folder(out, spec, images)
    return out


@torch.no_grad()
def random_code_images(specs: Sequence[PromptSpec], vq: MAGVITv2, out: str | os.PathLike, images_per_prompt: int,
                       seed: int = 0) -> Path:
    """Uniformly random codes per image (seeded per (prompt, sample)), decoded by the tokenizer (the one decode
    path), in the GenEval layout."""
    out = Path(out)
    side = int(vq.config.num_codes ** 0.5)
    for spec in specs:
        codes = torch.stack([
            torch.randint(0, vq.config.codebook_size, (vq.config.num_codes,),
                          generator=torch.Generator().manual_seed(image_seed(seed, spec.index, k)))
            for k in range(images_per_prompt)])
        write_prompt_folder(out, spec, decode_codes(vq, codes, (side, side)))
    return out


__all__ = ["METADATA_NAME", "TRAIN_PROMPTS_NAME", "first_per_task", "ground_truth_images", "random_code_images",
           "write_prompt_sets"]
