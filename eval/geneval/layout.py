"""The official GenEval image-folder layout (reference §4): reading it for evaluation, writing it from a generator.

```
<root>/<index:05d>/metadata.jsonl      one JSON object: that prompt's metadata line
<root>/<index:05d>/grid.png            optional, ignored by evaluation
<root>/<index:05d>/samples/<k:04d>.png
<root>/<index:05d>/samples/<k:04d>.cot.txt  optional: the text the image was conditioned on besides its prompt
                                            (Janus-Pro's semantic CoT); ignored by evaluation (only <digits>.png count)
```

The prompt and its requirements come from each folder's ``metadata.jsonl``, never from the folder number.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from PIL import Image, ImageOps, UnidentifiedImageError

from common.io import atomic_write_bytes, atomic_write_text, png_bytes
from eval.geneval.prompts import PromptSpec, parse_metadata

_SAMPLE = re.compile(r"\d+\.png")


@dataclass(frozen=True)
class PromptFolder:
    """One prompt's folder: its index (folder name), validated metadata and sample image paths (sorted)."""

    index: int
    path: Path
    spec: PromptSpec
    images: tuple[Path, ...]


def load_image(path: str | os.PathLike) -> Image.Image:
    """Open an image as the official evaluator does (EXIF orientation applied, RGB); errors name the file."""
    path = Path(path)
    try:
        with Image.open(path) as im:
            im.load()
            return ImageOps.exif_transpose(im).convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ValueError(f"cannot read image {path}: {err}") from err


def read_prompt_folder(
    path: str | os.PathLike, class_names: Sequence[str], expected_images: int | None = None
) -> PromptFolder:
    """Read ``<root>/<index>/``: validate ``metadata.jsonl`` and list ``samples/<digits>.png``."""
    path = Path(path)
    meta_path = path / "metadata.jsonl"
    if not meta_path.is_file():
        raise FileNotFoundError(f"missing prompt metadata: {meta_path}")
    try:
        raw = json.loads(meta_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{meta_path}: invalid JSON ({err.msg})") from err
    spec = parse_metadata(raw, class_names, int(path.name), str(meta_path))
    samples = path / "samples"
    images = tuple(
        sorted((p for p in samples.iterdir() if _SAMPLE.fullmatch(p.name)), key=lambda p: int(p.stem))
        if samples.is_dir()
        else ()
    )
    if expected_images is not None and len(images) != expected_images:
        raise ValueError(f"{samples}: expected {expected_images} images (<digits>.png), found {len(images)}")
    return PromptFolder(int(path.name), path, spec, images)


def discover(
    root: str | os.PathLike, class_names: Sequence[str], expected_images: int | None = None
) -> list[PromptFolder]:
    """All prompt folders under ``root`` (digit-named directories), sorted by index.

    ``expected_images`` (e.g. 4) makes a folder with another number of samples an error; None accepts any number
    (as the official evaluator does — the score module then reports the shortfall against the expected count).
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"GenEval image folder not found: {root}")
    folders = sorted((p for p in root.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name))
    if not folders:
        raise FileNotFoundError(f"no prompt folders (<index:05d>/) in {root}")
    return [read_prompt_folder(p, class_names, expected_images) for p in folders]


def write_prompt_folder(
    root: str | os.PathLike,
    spec: PromptSpec,
    images: Sequence[Image.Image],
    grid: Image.Image | None = None,
    cots: Sequence[str | None] | None = None,
) -> Path:
    """Write one prompt's folder: ``metadata.jsonl`` (the official line, byte-identical), samples, optional grid,
    optional ``samples/<k>.cot.txt`` per image whose ``cots[k]`` is not None.

    Every file is written atomically; the metadata goes last, so a folder with metadata is complete.
    """
    folder = Path(root) / f"{spec.index:05d}"
    if cots is not None and len(cots) != len(images):
        raise ValueError(f"{len(cots)} CoTs for {len(images)} images of prompt {spec.index}")
    for k, image in enumerate(images):
        atomic_write_bytes(folder / "samples" / f"{k:04d}.png", png_bytes(image))
        if cots is not None and cots[k] is not None:
            atomic_write_text(folder / "samples" / f"{k:04d}.cot.txt", cots[k] + "\n")
    if grid is not None:
        atomic_write_bytes(folder / "grid.png", png_bytes(grid))
    atomic_write_text(folder / "metadata.jsonl", spec.metadata_line())
    return folder
