"""The shapes world: flat coloured shapes on a small gray canvas, rendered to satisfy a GenEval metadata line.

This is the miniature of the paper's setting (issue "The shapes world"): a GenEval-style suite over shape names
(:mod:`eval.shapes.suite`), images rendered here as ground truth / training data, and an exact detector
(:mod:`eval.shapes.detector`) that feeds the real GenEval judge.

Rendering rules (see ``docs/shapes_world.md``):

- every object is an axis-aligned shape whose bounding box is a ``s x s`` square (``s`` drawn from
  ``size_range x canvas_size``), filled with one flat palette colour, no anti-aliasing;
- objects lie fully inside the canvas and at least ``min_gap`` background pixels apart (so the detector's connected
  components never merge two objects, even after a little blur);
- the background is one flat gray level per image, drawn from ``background_range`` (far from every palette colour);
- a ``position`` requirement holds for every (subject, reference) pair under the GenEval rule (§11) with the
  normalised offset beyond ``0.5 + position_margin``, so that a 1-px error cannot flip the verdict;
- objects whose requirement has no colour get a random palette colour; nothing else is drawn (no distractors).
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Mapping, Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw
from tqdm import tqdm

from common.io import atomic_write_bytes, atomic_write_text, png_bytes

RGB = tuple[int, int, int]

# Flat colours for the ten GenEval colour names, picked to be far apart in RGB (min pairwise distance 104, orange /
# yellow; see the tests) and >= 105 from every background gray, so that nearest-palette segmentation is exact on
# clean renders.
DEFAULT_PALETTE: dict[str, RGB] = {
    "red": (220, 20, 30),
    "orange": (255, 140, 0),
    "yellow": (250, 240, 30),
    "green": (20, 160, 40),
    "blue": (30, 60, 230),
    "purple": (130, 30, 170),
    "pink": (255, 110, 210),
    "brown": (110, 60, 20),
    "black": (10, 10, 10),
    "white": (255, 255, 255),
}


def _grid(w: int, h: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates (u, v) in [0, 1] of a ``h x w`` box, each ``[h, w]``."""
    u = (np.arange(w) + 0.5) / w
    v = (np.arange(h) + 0.5) / h
    return np.meshgrid(u, v)


# Each rasteriser fills a w x h box and touches all four of its sides (tested), so the tight box of the mask is the
# box itself. The half-pixel slack keeps pointed tips (triangle apex, diamond corners) at least one pixel wide.
def _circle(w: int, h: int) -> np.ndarray:
    u, v = _grid(w, h)
    return ((u - 0.5) / 0.5) ** 2 + ((v - 0.5) / 0.5) ** 2 <= 1.0 + 1e-9


def _square(w: int, h: int) -> np.ndarray:
    return np.ones((h, w), dtype=bool)


def _triangle(w: int, h: int) -> np.ndarray:
    """Apex up, base at the bottom."""
    u, v = _grid(w, h)
    return np.abs(u - 0.5) <= 0.5 * v + 0.5 / w + 1e-9


def _diamond(w: int, h: int) -> np.ndarray:
    u, v = _grid(w, h)
    return np.abs(u - 0.5) + np.abs(v - 0.5) <= 0.5 + 0.5 / max(w, h) + 1e-9


def _cross(w: int, h: int) -> np.ndarray:
    """A plus sign with arms one third of the box wide."""
    u, v = _grid(w, h)
    return (np.abs(u - 0.5) <= 1 / 6 + 1e-9) | (np.abs(v - 0.5) <= 1 / 6 + 1e-9)


SHAPE_MASKS: dict[str, Callable[[int, int], np.ndarray]] = {
    "circle": _circle, "square": _square, "triangle": _triangle, "diamond": _diamond, "cross": _cross,
}


def shape_mask(shape: str, w: int, h: int) -> np.ndarray:
    """Boolean ``[h, w]`` mask of ``shape`` filling a ``w x h`` box."""
    if shape not in SHAPE_MASKS:
        raise ValueError(f"unknown shape {shape!r}; known: {sorted(SHAPE_MASKS)}")
    return SHAPE_MASKS[shape](w, h)


@dataclass(frozen=True)
class ShapesWorld:
    """Configuration of the shapes world (canvas, vocabulary, palette, placement rules)."""

    canvas_size: int = 64
    shapes: tuple[str, ...] = ("circle", "square", "triangle", "diamond", "cross")
    palette: Mapping[str, Sequence[int]] = field(default_factory=lambda: dict(DEFAULT_PALETTE))
    background_range: tuple[int, int] = (160, 190)  # gray level, inclusive
    size_range: tuple[float, float] = (0.2, 0.34)  # object side / canvas side
    min_gap: int = 3  # background pixels between objects
    position_margin: float = 0.1  # required |offset| ratio above GenEval's 0.5
    max_tries: int = 200  # placement attempts per scene before giving up
    grid: int = 1  # box corners at multiples of this many pixels (e.g. the tokenizer's patch: objects align to tokens)

    def __post_init__(self) -> None:
        # Hydra passes ListConfig / DictConfig: normalise to plain tuples so the world is hashable-ish and comparable.
        object.__setattr__(self, "shapes", tuple(str(s) for s in self.shapes))
        object.__setattr__(self, "palette", {str(k): tuple(int(c) for c in v) for k, v in dict(self.palette).items()})
        object.__setattr__(self, "background_range", tuple(int(x) for x in self.background_range))
        object.__setattr__(self, "size_range", tuple(float(x) for x in self.size_range))
        unknown = [s for s in self.shapes if s not in SHAPE_MASKS]
        if unknown or not self.shapes:
            raise ValueError(f"ShapesWorld.shapes {list(self.shapes)}: unknown {unknown}; known {sorted(SHAPE_MASKS)}")
        bad = {k: v for k, v in self.palette.items() if len(v) != 3 or not all(0 <= c <= 255 for c in v)}
        if bad or not self.palette:
            raise ValueError(f"ShapesWorld.palette must map colour names to RGB triples in [0, 255], bad: {bad}")
        lo, hi = self.size_range
        if not 0 < lo <= hi < 1 or int(lo * self.canvas_size) < 4:
            raise ValueError(f"ShapesWorld.size_range {self.size_range} must give sides of >= 4 px below the canvas "
                             f"({self.canvas_size} px)")
        if not 0 <= self.background_range[0] <= self.background_range[1] <= 255:
            raise ValueError(f"ShapesWorld.background_range {self.background_range} must be within [0, 255]")
        if not isinstance(self.grid, int) or not 1 <= self.grid <= self.canvas_size - self.side_range()[1]:
            raise ValueError(f"ShapesWorld.grid {self.grid!r} must be an int in [1, canvas - largest side]")

    @property
    def colors(self) -> tuple[str, ...]:
        return tuple(self.palette)

    def side_range(self) -> tuple[int, int]:
        lo, hi = self.size_range
        return max(4, int(round(lo * self.canvas_size))), max(4, int(round(hi * self.canvas_size)))


@dataclass
class GroundTruthObject:
    """One rendered object. ``box`` = (x1, y1, x2, y2) in pixels, x2/y2 exclusive (mmdet); ``mask`` bool [H, W]."""

    shape: str
    color: str
    box: tuple[int, int, int, int]
    mask: np.ndarray
    group: int  # index of the metadata ``include`` requirement this object satisfies


# ------------------------------------------------------------------------------------------------------ geometry
def relation_ratios(box_a: Sequence[float], box_b: Sequence[float], threshold: float = 0.1) -> tuple[float, float]:
    """GenEval §11: margin-reduced centre offset of A from B divided by the raw offset norm, ``(dx, dy)``.

    "left of" iff dx < -0.5, "right of" iff dx > 0.5, "above" iff dy < -0.5, "below" iff dy > 0.5.
    """
    ax1, ay1, ax2, ay2 = box_a[:4]
    bx1, by1, bx2, by2 = box_b[:4]
    off = np.array([(ax1 + ax2 - bx1 - bx2) / 2, (ay1 + ay2 - by1 - by2) / 2])
    dims = np.array([abs(ax2 - ax1) + abs(bx2 - bx1), abs(ay2 - ay1) + abs(by2 - by1)])
    rev = np.sign(off) * np.maximum(np.abs(off) - threshold * dims, 0)
    if np.all(np.abs(rev) < 1e-3):
        return 0.0, 0.0
    rev = rev / np.linalg.norm(off)
    return float(rev[0]), float(rev[1])


_RELATION_AXIS = {"left of": (0, -1.0), "right of": (0, 1.0), "above": (1, -1.0), "below": (1, 1.0)}


def relation_holds(relation: str, box_a: Sequence[float], box_b: Sequence[float], margin: float = 0.0) -> bool:
    """Whether "A relation B" holds under the GenEval rule with the ratio beyond ``0.5 + margin``."""
    axis, sign = _RELATION_AXIS[relation]
    return sign * relation_ratios(box_a, box_b)[axis] > 0.5 + margin


# ------------------------------------------------------------------------------------------------------ rendering
@dataclass
class _Spec:
    shape: str
    color: str
    group: int
    position: tuple[str, int] | None


def _object_specs(metadata: dict, world: ShapesWorld, rng: np.random.Generator) -> list[_Spec]:
    specs = []
    for group, req in enumerate(metadata["include"]):
        if req["class"] not in world.shapes:
            raise ValueError(f"metadata {metadata['prompt']!r}: class {req['class']!r} is not a shape of this world "
                             f"{list(world.shapes)}")
        if "color" in req and req["color"] not in world.palette:
            raise ValueError(f"metadata {metadata['prompt']!r}: colour {req['color']!r} is not in the palette "
                             f"{list(world.palette)}")
        pos = tuple(req["position"]) if "position" in req else None
        for _ in range(req["count"]):
            color = req.get("color") or world.colors[int(rng.integers(len(world.colors)))]
            specs.append(_Spec(req["class"], color, group, pos))
    return specs


def _place(specs: list[_Spec], world: ShapesWorld, rng: np.random.Generator) -> list[tuple[int, int, int, int]] | None:
    """Sequentially draw a box per object that keeps the gap and the position relations; None when stuck."""
    lo, hi = world.side_range()
    size = world.canvas_size
    boxes: list[tuple[int, int, int, int]] = []
    for spec in specs:
        for _ in range(world.max_tries):
            s = int(rng.integers(lo, hi + 1))
            x, y = (int(c) * world.grid for c in rng.integers(0, (size - s) // world.grid + 1, size=2))
            box = (x, y, x + s, y + s)
            g = world.min_gap
            if any(box[0] < b[2] + g and b[0] < box[2] + g and box[1] < b[3] + g and b[1] < box[3] + g for b in boxes):
                continue
            if spec.position is not None:
                relation, target = spec.position
                refs = [b for b, sp in zip(boxes, specs) if sp.group == target]
                if not all(relation_holds(relation, box, r, world.position_margin) for r in refs):
                    continue
            boxes.append(box)
            break
        else:
            return None
    return boxes


def _as_numpy_rng(generator: np.random.Generator | torch.Generator | int) -> np.random.Generator:
    if isinstance(generator, np.random.Generator):
        return generator
    if isinstance(generator, torch.Generator):
        return np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=generator)))
    return np.random.default_rng(int(generator))


def render_scene(
    metadata: dict, generator: np.random.Generator | torch.Generator | int, world: ShapesWorld | None = None
) -> tuple[Image.Image, list[GroundTruthObject]]:
    """Render one image satisfying ``metadata`` (counts, colours, positions); deterministic given the generator.

    Returns the RGB image (``canvas_size`` square) and one :class:`GroundTruthObject` per drawn object, in
    ``include`` order. Raises ``RuntimeError`` if the objects cannot be placed (too many / too large for the canvas).
    """
    world = world or ShapesWorld()
    rng = _as_numpy_rng(generator)
    specs = _object_specs(metadata, world, rng)
    for _ in range(world.max_tries):
        boxes = _place(specs, world, rng)
        if boxes is not None:
            break
    else:
        raise RuntimeError(f"cannot place {len(specs)} objects for {metadata['prompt']!r} on a "
                           f"{world.canvas_size}px canvas with sides {world.side_range()}")
    size = world.canvas_size
    gray = int(rng.integers(world.background_range[0], world.background_range[1] + 1))
    canvas = np.full((size, size, 3), gray, dtype=np.uint8)
    objects = []
    for spec, (x1, y1, x2, y2) in zip(specs, boxes):
        mask = np.zeros((size, size), dtype=bool)
        mask[y1:y2, x1:x2] = shape_mask(spec.shape, x2 - x1, y2 - y1)
        canvas[mask] = world.palette[spec.color]
        objects.append(GroundTruthObject(spec.shape, spec.color, (x1, y1, x2, y2), mask, spec.group))
    return Image.fromarray(canvas, "RGB"), objects


def scene_seed(seed: int, prompt_index: int, sample_index: int) -> np.random.Generator:
    """The generator of one (prompt, sample) image: independent of batch size and of the other images."""
    return np.random.default_rng([seed, prompt_index, sample_index])


def render_from_prompt_metadata(
    suite: Sequence[dict],
    world: ShapesWorld | None = None,
    images_per_prompt: int = 4,
    seed: int = 0,
    out_dir: str | os.PathLike | None = None,
    progress: bool = False,
) -> Iterator[tuple[int, int, Image.Image, list[GroundTruthObject]]]:
    """Render ``images_per_prompt`` scenes for every line of a suite, yielding ``(prompt_idx, sample_idx, image,
    objects)``.

    With ``out_dir`` the images are also written in the GenEval folder layout (``<out>/<idx:05d>/metadata.jsonl``,
    ``samples/<k:04d>.png``), atomically; files already there are kept (resume) and still yielded, re-rendered.
    """
    world = world or ShapesWorld()
    jobs = [(i, k) for i in range(len(suite)) for k in range(images_per_prompt)]
    for i, k in tqdm(jobs, desc="render shapes", disable=not progress):
        image, objects = render_scene(suite[i], scene_seed(seed, i, k), world)
        if out_dir is not None:
            _write_sample(Path(out_dir) / f"{i:05d}", suite[i], k, image)
        yield i, k, image, objects


def _write_sample(folder: Path, metadata: dict, k: int, image: Image.Image) -> None:
    (folder / "samples").mkdir(parents=True, exist_ok=True)
    meta_path = folder / "metadata.jsonl"
    if meta_path.exists():
        # Resuming into a folder written for another suite would silently mix prompts and images.
        if json.loads(meta_path.read_text()) != metadata:
            raise ValueError(f"{meta_path} holds {meta_path.read_text().strip()!r}, not this suite's line "
                             f"{json.dumps(metadata)!r}; use a fresh out_dir")
    else:
        atomic_write_text(meta_path, json.dumps(metadata) + "\n")
    png = folder / "samples" / f"{k:04d}.png"
    if not png.exists():
        atomic_write_bytes(png, png_bytes(image))


# ----------------------------------------------------------------------------------------------------- image grid
def image_grid(
    images: Sequence[Image.Image], nrow: int, labels: Sequence[str] | None = None, pad: int = 2,
    background: RGB = (255, 255, 255),
) -> Image.Image:
    """Tile images into a grid with ``nrow`` images per row (torchvision's convention), optional caption per cell.

    Cells are the size of the largest image; captions (PIL's default bitmap font) go in a strip under each cell.
    """
    if not images:
        raise ValueError("image_grid needs at least one image")
    if nrow < 1:
        raise ValueError(f"image_grid: nrow must be >= 1, got {nrow}")
    if labels is not None and len(labels) != len(images):
        raise ValueError(f"image_grid: {len(labels)} labels for {len(images)} images")
    cw = max(im.width for im in images)
    ch = max(im.height for im in images)
    label_h = 12 if labels is not None else 0
    ncol = min(nrow, len(images))
    nrows = math.ceil(len(images) / nrow)
    grid = Image.new("RGB", (pad + ncol * (cw + pad), pad + nrows * (ch + label_h + pad)), background)
    draw = ImageDraw.Draw(grid)
    for idx, im in enumerate(images):
        r, c = divmod(idx, nrow)
        x, y = pad + c * (cw + pad), pad + r * (ch + label_h + pad)
        grid.paste(im.convert("RGB"), (x, y))
        if labels is not None:
            draw.text((x, y + ch), str(labels[idx]), fill=(0, 0, 0))
    return grid
