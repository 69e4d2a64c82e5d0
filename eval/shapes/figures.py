"""Figures of the miniature table a person reads at 100 % zoom.

:func:`qualitative_grid`: one row per held-out prompt (its text on the left), one column per method (its name on
top), each cell the method's image of that slot upscaled with nearest-neighbour sampling (the pixels stay sharp), in
a green frame when the GenEval judge accepted it and a red one when not.
"""
from __future__ import annotations

import os
import textwrap
from pathlib import Path
from typing import Mapping, Sequence

from PIL import Image, ImageDraw, ImageFont

from common.io import atomic_write_bytes, png_bytes
from eval.geneval.layout import load_image

__all__ = ["qualitative_grid"]

GREEN, RED, GRAY = (30, 160, 60), (210, 40, 40), (150, 150, 150)


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: one bitmap size
        return ImageFont.load_default()


def qualitative_grid(columns: Sequence[tuple[str, str | os.PathLike, Mapping[tuple[int, int], bool]]],
                     prompts: Mapping[int, str], path: str | os.PathLike, sample: int = 0, cell: int = 128,
                     frame: int = 5, text_width: int = 260) -> Path | None:
    """``columns``: ``(method name, GenEval image folder, (prompt, sample) -> correct)`` in table order; ``prompts``:
    prompt index -> text (the rows, in index order). Writes a PNG; returns None when no column has images."""
    columns = [c for c in columns if Path(c[1]).is_dir()]
    if not columns or not prompts:
        return None
    font, small = _font(15), _font(13)
    header = 44
    width = text_width + len(columns) * (cell + 2 * frame + 6) + 6
    height = header + len(prompts) * (cell + 2 * frame + 6) + 6
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for c, (name, _, _) in enumerate(columns):
        x = text_width + c * (cell + 2 * frame + 6)
        for line_no, line in enumerate(textwrap.wrap(name, 18)[:2]):
            draw.text((x + 2, 4 + 18 * line_no), line, fill=(0, 0, 0), font=small)
    for r, (index, text) in enumerate(sorted(prompts.items())):
        y = header + r * (cell + 2 * frame + 6)
        for line_no, line in enumerate(textwrap.wrap(text, 30)[:6]):
            draw.text((6, y + 6 + 18 * line_no), line, fill=(0, 0, 0), font=font)
        for c, (_, folder, verdicts) in enumerate(columns):
            x = text_width + c * (cell + 2 * frame + 6)
            image_path = Path(folder) / f"{index:05d}" / "samples" / f"{sample:04d}.png"
            correct = verdicts.get((index, sample))
            draw.rectangle([x, y, x + cell + 2 * frame - 1, y + cell + 2 * frame - 1],
                           fill=GRAY if correct is None else GREEN if correct else RED)
            if image_path.is_file():
                canvas.paste(load_image(image_path).resize((cell, cell), resample=Image.NEAREST), (x + frame, y + frame))
    return atomic_write_bytes(path, png_bytes(canvas))
