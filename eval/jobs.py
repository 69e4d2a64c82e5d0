"""What a generator must write for a benchmark: one :class:`ImageJob` per image, in the benchmark's own layout.

* :func:`compbench_jobs`: T2I-CompBench, ``<root>/<category>/samples/<prompt>_<NNNNNN>.png``, prompt ``k`` of
  ``<category>_val.txt`` owning images ``n k .. n k + n - 1`` (``eval.t2i_compbench.layout``; 10 per prompt);
* :func:`wise_jobs`: WISE, ``<root>/<prompt_id>.png``, one image per prompt, from ``Prompt`` only (``eval.wise``).

A job's ``key`` names the image independently of the batch and the process (``("compbench", category, k, i)``,
``("wise", prompt_id)``): generators seed image ``i`` of a job from it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from eval.t2i_compbench.layout import IMAGES_PER_PROMPT, image_name
from eval.t2i_compbench.prompts import load_prompts as load_compbench_prompts
from eval.wise.prompts import image_path
from eval.wise.prompts import load_prompts as load_wise_prompts

__all__ = ["ImageJob", "compbench_jobs", "wise_jobs"]


@dataclass(frozen=True)
class ImageJob:
    key: tuple
    prompt: str
    path: Path


def compbench_jobs(root: str | os.PathLike, prompt_dir: str | os.PathLike, categories: Sequence[str],
                   images_per_prompt: int = IMAGES_PER_PROMPT) -> list[ImageJob]:
    """Every image of the T2I-CompBench validation prompts of ``categories``, category by category."""
    if images_per_prompt < 1:
        raise ValueError(f"images_per_prompt must be >= 1, got {images_per_prompt}")
    jobs = []
    for category in categories:
        for k, prompt in enumerate(load_compbench_prompts(prompt_dir, category)):
            for i in range(images_per_prompt):
                index = images_per_prompt * k + i
                jobs.append(ImageJob(("compbench", category, k, i), prompt,
                                     Path(root) / category / "samples" / image_name(prompt, index)))
    return jobs


def wise_jobs(root: str | os.PathLike, prompt_dir: str | os.PathLike) -> list[ImageJob]:
    """One image per WISE prompt (legacy set), in prompt-id order."""
    return [ImageJob(("wise", p.prompt_id), p.prompt, image_path(root, p.prompt_id))
            for p in load_wise_prompts(prompt_dir)]
