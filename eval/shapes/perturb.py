"""Near-miss scenes of the shapes world and the exact labeller that the judge-data builder injects (issue 13, item 2).

A judge that is trained on the Show-o's own images alone can score well by reading the prompt (some prompts are
easy, some never succeed). To force it to look, the builder (:func:`reward_models.judge_data.build_judge_data`)
also shows it, for the *same* prompt, rendered ground truth ("yes") and **near misses**: scenes rendered from the
prompt's metadata with exactly one thing changed (:data:`NEAR_MISS_KINDS`):

* ``color``: one coloured requirement takes another palette colour, or two coloured requirements swap colours
  (a binding error: "a red circle and a blue square" drawn as a blue circle and a red square);
* ``shape``: one object takes another shape (one of N counted objects: N - 1 stay);
* ``count``: one requirement's count goes up or down by one (never below one);
* ``relation``: the position relation is flipped (left of <-> right of, above <-> below);
* ``missing``: one object is left out (a position subject whose reference is gone keeps no relation);
* ``extra``: one more object of a random shape (and of a random palette colour).

The change is made on the metadata that the renderer draws (:func:`perturb`); the *label* is never assumed: the
builder judges every image it keeps with :class:`eval.shapes.oracle.ShapesLabeller` (the real GenEval judge on the exact detector)
after the tokenizer round trip, so e.g. an extra square in "a photo of a circle and a square" stays a "yes".
"""
from __future__ import annotations

import copy
from typing import Sequence

import numpy as np
from PIL import Image

from eval.shapes.detector import ShapesColorClassifier, ShapesDetector
from eval.shapes.render import ShapesWorld, render_scene

GROUND_TRUTH = "ground_truth"
NEAR_MISS_KINDS = ("color", "shape", "count", "relation", "missing", "extra")
FLIPPED = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}


def _other(options: Sequence[str], current: str | None, rng: np.random.Generator) -> str:
    choices = [o for o in options if o != current]
    return choices[int(rng.integers(len(choices)))]


def _remove_group(include: list[dict], index: int) -> list[dict]:
    """``include`` without requirement ``index``: positions that pointed at it are dropped, later indices shift."""
    out = []
    for i, req in enumerate(include):
        if i == index:
            continue
        req = dict(req)
        if "position" in req:
            relation, target = req["position"]
            if target == index:
                del req["position"]
            else:
                req["position"] = [relation, target - (target > index)]
        out.append(req)
    return out


def _color(include: list[dict], rng: np.random.Generator, world: ShapesWorld) -> list[dict] | None:
    coloured = [i for i, req in enumerate(include) if "color" in req]
    if not coloured:
        return None  # no colour is asked for: any colour is right
    if len(coloured) >= 2 and rng.random() < 0.5:
        a, b = (coloured[int(j)] for j in rng.choice(len(coloured), 2, replace=False))
        if include[a]["color"] != include[b]["color"]:
            include[a]["color"], include[b]["color"] = include[b]["color"], include[a]["color"]
            return include
    i = coloured[int(rng.integers(len(coloured)))]
    include[i]["color"] = _other(world.colors, include[i]["color"], rng)
    return include


def _shape(include: list[dict], rng: np.random.Generator, world: ShapesWorld) -> list[dict]:
    i = int(rng.integers(len(include)))
    new = _other(world.shapes, include[i]["class"], rng)
    if include[i]["count"] == 1:
        include[i]["class"] = new
    else:
        include[i]["count"] -= 1
        include.append({"class": new, "count": 1, **({"color": include[i]["color"]} if "color" in include[i] else {})})
    return include


def _count(include: list[dict], rng: np.random.Generator) -> list[dict]:
    i = int(rng.integers(len(include)))
    delta = 1 if include[i]["count"] == 1 or rng.random() < 0.5 else -1
    include[i]["count"] += delta
    return include


def _relation(include: list[dict]) -> list[dict] | None:
    subjects = [req for req in include if "position" in req]
    if not subjects:
        return None
    for req in subjects:
        req["position"] = [FLIPPED[req["position"][0]], req["position"][1]]
    return include


def _missing(include: list[dict], rng: np.random.Generator) -> list[dict] | None:
    i = int(rng.integers(len(include)))
    if include[i]["count"] > 1:
        include[i]["count"] -= 1
        return include
    out = _remove_group(include, i)
    return out or None  # nothing left to draw: the renderer needs one object


def _extra(include: list[dict], rng: np.random.Generator, world: ShapesWorld) -> list[dict]:
    req = {"class": world.shapes[int(rng.integers(len(world.shapes)))], "count": 1}
    if any("color" in r for r in include):
        req["color"] = world.colors[int(rng.integers(len(world.colors)))]
    return include + [req]


def perturb(line: dict, kind: str, rng: np.random.Generator, world: ShapesWorld) -> dict | None:
    """The metadata the renderer draws for a ``kind`` near miss of ``line`` (a deep copy; ``line`` is unchanged), or
    ``None`` when the kind does not apply (``color`` without a colour requirement, ``relation`` without a position,
    ``missing`` of the only object). ``rng`` picks the requirement and the new value."""
    include = copy.deepcopy(line["include"])
    if kind == "color":
        include = _color(include, rng, world)
    elif kind == "shape":
        include = _shape(include, rng, world)
    elif kind == "count":
        include = _count(include, rng)
    elif kind == "relation":
        include = _relation(include)
    elif kind == "missing":
        include = _missing(include, rng)
    elif kind == "extra":
        include = _extra(include, rng, world)
    else:
        raise ValueError(f"unknown near-miss kind {kind!r}; known: {NEAR_MISS_KINDS}")
    if include is None:
        return None
    return {"tag": line["tag"], "include": include, "prompt": f"{line['prompt']} [near miss: {kind}]"}


class SceneRenderer:
    """Rendered scenes of a prompt line, as :func:`reward_models.judge_data.build_judge_data` asks for them:
    ``renderer(line, kind, seed)`` -> a PIL image of the ground truth (``kind="ground_truth"``) or of one near miss,
    or ``None`` when the kind does not apply or the scene cannot be placed on the canvas. Deterministic in ``seed``.
    The builder passes every image through the Show-o's tokenizer and labels it with :class:`eval.shapes.oracle.ShapesLabeller`."""

    def __init__(self, world: ShapesWorld, kinds: Sequence[str] = NEAR_MISS_KINDS) -> None:
        unknown = [k for k in kinds if k not in NEAR_MISS_KINDS]
        if unknown or not kinds:
            raise ValueError(f"SceneRenderer.kinds {list(kinds)}: unknown {unknown}; known {NEAR_MISS_KINDS}")
        self.world = world
        self.kinds = tuple(kinds)

    def __call__(self, line: dict, kind: str, seed: int) -> Image.Image | None:
        rng = np.random.default_rng(seed)
        metadata = line if kind == GROUND_TRUTH else perturb(line, kind, rng, self.world)
        if metadata is None:
            return None
        try:
            return render_scene(metadata, rng, self.world)[0]
        except RuntimeError:  # too many objects for the canvas (e.g. count + 1 of four): no such scene
            return None


def seen_objects(detector: ShapesDetector, colors: ShapesColorClassifier, image: Image.Image, threshold: float
                 ) -> tuple[tuple[int, int], list[tuple[int, np.ndarray, np.ndarray, str]]]:
    """What the exact detector and colour classifier see in ``image``: its ``(width, height)`` and one ``(label, box,
    bool mask, colour name)`` per detection scoring above ``threshold``, label by label."""
    detections = detector.detect_one(image)
    found = []
    for label, dets in detections.by_label.items():
        keep = dets.bboxes[:, 4] > threshold
        if keep.any():
            names = colors.classify(image, dets.bboxes[keep], dets.masks[keep], detector.class_names[label])
            found += [(label, box, np.asarray(mask, dtype=bool), name)
                      for box, mask, name in zip(dets.bboxes[keep], dets.masks[keep], names)]
    return detections.image_size, found


class ShapesDescriber:
    """What the exact detector sees in an image, as text (the tiny judges' caption task,
    ``reward_models.data.describe_example``): one ``"<colour> <shape> <row> <column>"`` per detection scoring above
    ``threshold`` (GenEval's 0.3), in reading order of the box centres, rows / columns the thirds of the canvas
    (``top / middle / bottom``, ``left / center / right``), joined by ``"; "``; ``"no objects"`` when none."""

    ROWS = ("top", "middle", "bottom")
    COLUMNS = ("left", "center", "right")

    def __init__(self, world: ShapesWorld, threshold: float = 0.3) -> None:
        self.detector = ShapesDetector(world)
        self.colors = ShapesColorClassifier(world)
        self.threshold = threshold

    def __call__(self, image: Image.Image) -> str:
        found = []
        (width, height), objects = seen_objects(self.detector, self.colors, image, self.threshold)
        for label, box, _, color in objects:
            cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
            row, column = self.ROWS[min(int(3 * cy / height), 2)], self.COLUMNS[min(int(3 * cx / width), 2)]
            found.append((float(cy), float(cx), f"{color} {self.detector.class_names[label]} {row} {column}"))
        return "; ".join(text for _, _, text in sorted(found)) or "no objects"


class ShapesPatchLabeller:
    """Per-patch targets of the judge's vision pre-training (``reward_models.vision_pretrain``): for every
    ``patch_size`` patch of an image (row-major), the shape (``0`` background, ``1 + k`` for ``world.shapes[k]``)
    and the colour (``0`` background, ``1 + c`` for ``world.colors[c]``) of the exact detector's detection that
    covers most of its pixels (detections scoring above ``threshold``, GenEval's 0.3; colours by the exact colour
    classifier, as ``ShapesDescriber`` names them). ``labeller(image)`` -> ``(shape ids, colour ids)``, int64 arrays
    of ``(size / patch_size)²``; ``classes`` = the number of values of each."""

    def __init__(self, world: ShapesWorld, patch_size: int, threshold: float = 0.3) -> None:
        if patch_size < 1 or world.canvas_size % patch_size:
            raise ValueError(f"patch_size {patch_size} must divide the canvas size {world.canvas_size}")
        self.detector = ShapesDetector(world)
        self.colors = ShapesColorClassifier(world)
        self.patch_size, self.threshold = patch_size, threshold
        self.classes = (1 + len(world.shapes), 1 + len(world.colors))

    def __call__(self, image: Image.Image) -> tuple[np.ndarray, np.ndarray]:
        (width, height), objects = seen_objects(self.detector, self.colors, image, self.threshold)
        if width % self.patch_size or height % self.patch_size:
            raise ValueError(f"image {width}x{height} is not a whole number of {self.patch_size} px patches")
        shape = np.zeros((height, width), np.int64)
        color = np.zeros((height, width), np.int64)
        for label, _, mask, name in objects:
            shape[mask] = 1 + label
            color[mask] = 1 + self.colors.colors.index(name)
        return self._majority(shape), self._majority(color)

    def _majority(self, ids: np.ndarray) -> np.ndarray:
        """The most frequent non-zero id of every patch (the smallest on ties), 0 where a patch has none."""
        p = self.patch_size
        h, w = ids.shape
        patches = ids.reshape(h // p, p, w // p, p).transpose(0, 2, 1, 3).reshape(-1, p * p)
        counts = np.zeros((len(patches), int(ids.max()) + 1), np.int64)
        np.add.at(counts, (np.repeat(np.arange(len(patches)), p * p), patches.ravel()), 1)
        counts[:, 0] = 0
        return np.where(counts.max(1) > 0, counts.argmax(1), 0)

