"""WISE prompts (legacy set, the paper setting) and the image layout (reference ``t2i_compbench_wise.md`` §7.1).

Three JSON files of records ``{Prompt, Explanation, Category, Subcategory, prompt_id}``; the six categories are ID
ranges. One image per prompt, ``<image_dir>/<prompt_id>.png``. Generators see ``Prompt`` only; ``Explanation`` is
for the judge.
"""
from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from PIL import Image

from common.io import atomic_write_bytes

__all__ = ["CATEGORIES", "FILES", "WEIGHTS", "WisePrompt", "category_of", "image_path", "load_prompts",
           "write_image"]

FILES = ("cultural_common_sense.json", "spatio-temporal_reasoning.json", "natural_science.json")
# category -> inclusive prompt-id range; weight = its share of the 1,000 prompts (Overall = mean over all images)
CATEGORIES = {"cultural": (1, 400), "time": (401, 567), "space": (568, 700), "biology": (701, 800),
              "physics": (801, 900), "chemistry": (901, 1000)}
WEIGHTS = {"cultural": 0.4, "time": 0.167, "space": 0.133, "biology": 0.1, "physics": 0.1, "chemistry": 0.1}
_FIELDS = ("Prompt", "Explanation", "Category", "Subcategory", "prompt_id")


@dataclass(frozen=True)
class WisePrompt:
    prompt_id: int
    prompt: str
    explanation: str
    category: str  # one of CATEGORIES (from the id range)
    subcategory: str


def category_of(prompt_id: int) -> str:
    """The WISE category of a legacy prompt id (1–1000)."""
    for name, (lo, hi) in CATEGORIES.items():
        if lo <= prompt_id <= hi:
            return name
    raise ValueError(f"WISE prompt_id {prompt_id} is outside 1–1000")


def load_prompts(wise_dir: str | os.PathLike, files: Sequence[str] = FILES) -> list[WisePrompt]:
    """All prompts of ``files`` under ``wise_dir``, sorted by id; errors name the file and the record."""
    out: dict[int, WisePrompt] = {}
    for name in files:
        path = Path(wise_dir) / name
        if not path.is_file():
            raise FileNotFoundError(f"WISE prompt file not found: {path}")
        for i, rec in enumerate(json.loads(path.read_text(encoding="utf-8"))):
            missing = [f for f in _FIELDS if f not in rec]
            if missing:
                raise ValueError(f"{path}: record {i} lacks field(s) {missing}")
            pid = int(rec["prompt_id"])
            if pid in out:
                raise ValueError(f"{path}: record {i}: duplicate prompt_id {pid}")
            out[pid] = WisePrompt(pid, rec["Prompt"], rec["Explanation"], category_of(pid), rec["Subcategory"])
    return [out[k] for k in sorted(out)]


def image_path(image_dir: str | os.PathLike, prompt_id: int) -> Path:
    return Path(image_dir) / f"{prompt_id}.png"


def write_image(image_dir: str | os.PathLike, prompt_id: int, image: Image.Image) -> Path:
    """Write ``<image_dir>/<prompt_id>.png`` atomically (the official layout)."""
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    path = image_path(image_dir, prompt_id)
    atomic_write_bytes(path, buf.getvalue())
    return path
