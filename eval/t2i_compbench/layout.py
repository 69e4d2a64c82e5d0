"""The official T2I-CompBench image layout (reference §1), written by generators and read by the evaluator.

```
<root>/<category>/samples/<prompt>_<NNNNNN>.png
```

``NNNNNN`` is a 6-digit running index over the whole category, prompt-major: prompt ``k`` of the validation file
owns images ``n·k … n·k + n − 1`` (``n`` = 10 images per prompt in the official protocol). The evaluator recovers
the prompt as the file name up to the first ``_`` and orders images by the trailing integer, so one category per
``samples/`` folder, nothing else in it.
"""
from __future__ import annotations

import io
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from PIL import Image

from common.io import atomic_write_bytes

__all__ = ["IMAGES_PER_PROMPT", "CategoryImage", "check_against_prompts", "discover_category", "image_name",
           "parse_image_name", "write_image"]

IMAGES_PER_PROMPT = 10
_NAME = re.compile(r"(?P<prompt>[^_/]+)_(?P<index>\d+)\.png")


@dataclass(frozen=True)
class CategoryImage:
    """One image of a category folder: its prompt (from the name), running index and path."""

    category: str
    prompt: str
    index: int
    path: Path

    @property
    def key(self) -> str:
        """``<category>/samples/<file name>``: the results key (stable across machines)."""
        return f"{self.category}/samples/{self.path.name}"


def image_name(prompt: str, index: int) -> str:
    """``<prompt>_<index:06d>.png``; prompts with ``_`` or ``/`` cannot round-trip and are rejected."""
    if "_" in prompt or "/" in prompt:
        raise ValueError(f"prompt {prompt!r} holds '_' or '/', which the T2I-CompBench file-name layout forbids")
    if index < 0:
        raise ValueError(f"image index must be >= 0, got {index}")
    return f"{prompt}_{index:06d}.png"


def parse_image_name(name: str) -> tuple[str, int]:
    """``(prompt, index)`` of an official file name (prompt = up to the first ``_``); errors name the file."""
    match = _NAME.fullmatch(name)
    if match is None:
        raise ValueError(f"not a T2I-CompBench image name (<prompt>_<digits>.png, no '_' in the prompt): {name!r}")
    return match["prompt"], int(match["index"])


def write_image(root: str | os.PathLike, category: str, prompt: str, index: int, image: Image.Image) -> Path:
    """Write one image atomically as ``<root>/<category>/samples/<prompt>_<index:06d>.png``."""
    path = Path(root) / category / "samples" / image_name(prompt, index)
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())
    return path


def discover_category(root: str | os.PathLike, category: str) -> list[CategoryImage]:
    """Every image of ``<root>/<category>/samples/``, sorted by index; stray files and duplicate indices are errors."""
    samples = Path(root) / category / "samples"
    if not samples.is_dir():
        raise FileNotFoundError(f"T2I-CompBench folder not found: {samples} (expected <root>/<category>/samples/)")
    images = []
    for path in samples.iterdir():
        if path.name.startswith("."):
            continue  # temporary files of an interrupted atomic write
        prompt, index = parse_image_name(path.name)
        images.append(CategoryImage(category, prompt, index, path))
    images.sort(key=lambda im: im.index)
    for a, b in zip(images, images[1:]):
        if a.index == b.index:
            raise ValueError(f"{samples}: two images with index {a.index}: {a.path.name!r} and {b.path.name!r}")
    return images


def check_against_prompts(
    images: Sequence[CategoryImage], prompts: Sequence[str], images_per_prompt: int = IMAGES_PER_PROMPT
) -> None:
    """Image ``i`` must show prompt ``i // images_per_prompt`` of the validation file (catches shifted indices)."""
    for im in images:
        k = im.index // images_per_prompt
        if k >= len(prompts):
            raise ValueError(f"{im.path}: index {im.index} is past the {len(prompts)} prompts × {images_per_prompt}")
        if im.prompt != prompts[k]:
            raise ValueError(f"{im.path}: file name prompt {im.prompt!r} but prompt {k} of the file is {prompts[k]!r}")
