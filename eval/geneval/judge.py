"""GenEval's per-image decision logic (GenEval paper §3; official ``evaluation/evaluate_images.py`` at ``af4902f``).

Separate from any detector: the judge receives one image's per-class detections (``ImageDetections``), the prompt
metadata and a colour classifier, and returns a ``Verdict`` whose ``correct`` / ``reason`` / ``details`` equal the
official record's. It works with any class vocabulary (``class_names[k]`` is the name of label ``k``), so the shapes
world reuses it unchanged.

Numerics follow the official environment (numpy 1.23, float32 detector output): threshold and position arithmetic
run in float32 because numpy 1.23 casts Python scalars to the array's dtype; the NMS IoU is computed the way numpy
1.23 evaluates it on numpy scalars (float32 differences, then float64). Ties in score keep numpy 1.23's order: a
stable ascending sort, then reversed, so the tied row with the higher row index comes first.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from typing import Any, Mapping, Sequence

import numpy as np
from PIL import Image

from eval.geneval.types import ColorClassifier, ImageDetections

# The evaluator's fixed colour order: it orders the counts in colour-failure reasons (GenEval §3, "colors").
COLORS: tuple[str, ...] = ("red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white")
RELATIONS: tuple[str, ...] = ("left of", "right of", "above", "below")

# Options the official ``--options`` accepts that belong to other components (detector, colour classifier).
_NON_JUDGE_OPTIONS = frozenset({"clip_model", "bgcolor", "crop", "model"})


@dataclass(frozen=True)
class JudgeOptions:
    """The official evaluator's judging constants (GenEval reference §5)."""

    threshold: float = 0.3  # strict ``score > threshold`` on every non-counting image
    counting_threshold: float = 0.9  # strict, for *every* class when the prompt's tag is ``counting``
    max_objects: int = 16  # per-class cap, applied before the exclude rule
    max_overlap: float = 1.0  # greedy box-IoU NMS threshold; exactly 1 disables NMS
    position_threshold: float = 0.1  # margin coefficient of the position rule

    @classmethod
    def from_options(cls, options: Mapping[str, str] | Sequence[str] | None) -> "JudgeOptions":
        """Parse the official ``--options`` strings: a ``{key: value}`` mapping or a list of ``"key=value"``.

        Values are parsed as the official script parses them (``float`` / ``int``). Keys that belong to the detector
        or the colour classifier (``clip_model``, ``bgcolor``, ``crop``, ``model``) are ignored here; any other
        unknown key is an error.
        """
        if options is None:
            return cls()
        if not isinstance(options, Mapping):
            pairs = {}
            for item in options:
                if "=" not in item:
                    raise ValueError(f"judge option {item!r} is not of the form key=value")
                key, value = item.split("=", 1)
                pairs[key] = value
            options = pairs
        known = {f.name: f.type for f in fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, value in options.items():
            if key in _NON_JUDGE_OPTIONS:
                continue
            if key not in known:
                raise ValueError(f"unknown judge option {key!r} (value {value!r}); known: {sorted(known)}")
            parse = int if key == "max_objects" else float
            try:
                kwargs[key] = parse(value)
            except ValueError as err:
                raise ValueError(f"judge option {key!r}: cannot parse {value!r} as {parse.__name__}") from err
        return cls(**kwargs)


@dataclass
class Verdict:
    """The judge's decision on one image.

    ``details`` maps class name -> kept ``[x1, y1, x2, y2, score]`` rows (label order, then kept order), exactly the
    official ``details`` before ``json.dumps``; ``kept_rows`` holds the same detections as row indices into the
    detector's per-class output; ``color_calls`` lists each colour-classifier call as ``(class, rows, colours)``.
    """

    correct: bool
    reason: str
    details: dict[str, list[list[float]]]
    kept_rows: dict[str, list[int]] = field(default_factory=dict)
    color_calls: list[tuple[str, list[int], list[str]]] = field(default_factory=list)

    @property
    def details_json(self) -> str:
        """The official ``details`` string (``json.dumps`` with default separators)."""
        return json.dumps(self.details)


@dataclass
class _Kept:
    """Kept detections of one class: rows into the detector output, boxes float32 [k, 5], masks bool [k, H, W]."""

    rows: list[int]
    boxes: np.ndarray
    masks: np.ndarray


def descending_order(scores: np.ndarray) -> np.ndarray:
    """Indices sorting ``scores`` descending with numpy 1.23's tie order (stable ascending sort, then reversed)."""
    return np.argsort(scores, kind="stable")[::-1]


def box_iou(box_a: np.ndarray, box_b: np.ndarray) -> float:
    """IoU of two ``[x1, y1, x2, y2, ...]`` float32 boxes with the official +1-pixel area convention.

    Coordinate differences are float32 (numpy-scalar arithmetic), the ``+ 1`` and the rest float64, as numpy 1.23
    evaluates the official expression on numpy scalars.
    """

    def area(x1, y1, x2, y2) -> float:
        return max(float(np.float32(x2) - np.float32(x1)) + 1, 0) * max(float(np.float32(y2) - np.float32(y1)) + 1, 0)

    inter = area(max(box_a[0], box_b[0]), max(box_a[1], box_b[1]), min(box_a[2], box_b[2]), min(box_a[3], box_b[3]))
    union = area(*box_a[:4]) + area(*box_b[:4]) - inter
    return inter / union if union else 0.0


def keep_detections(boxes: np.ndarray, threshold: float, options: JudgeOptions) -> list[int]:
    """Rows of one class's ``boxes`` (float32 [n, 5]) that the official evaluator keeps, in kept order.

    Sort by score descending, keep ``score > threshold`` (float32), cap at ``max_objects``, then greedy NMS when
    ``max_overlap != 1`` (a later box survives if its IoU with the chosen one is ``< max_overlap``).
    """
    scores = boxes[:, 4]
    order = descending_order(scores)
    order = order[scores[order] > np.float32(threshold)][: options.max_objects].tolist()
    kept = []
    while order:
        best = order.pop(0)
        kept.append(best)
        if options.max_overlap != 1:
            order = [row for row in order if box_iou(boxes[best], boxes[row]) < options.max_overlap]
    return kept


def relative_position(box_a: np.ndarray, box_b: np.ndarray, position_threshold: float) -> set[str]:
    """Relations of box A relative to box B (GenEval reference §11), computed in float32.

    A relation holds when the margin-reduced centre offset component exceeds half the norm of the un-reduced offset;
    the margin is ``position_threshold × (size_A + size_B)`` per axis. Empty when both reduced components are
    below 1e-3 (identical centres included).
    """
    corners = np.stack([box_a[:4], box_b[:4]]).astype(np.float32).reshape(2, 2, 2)  # [object, corner, xy]
    center_a, center_b = corners.mean(axis=1)
    size_a, size_b = np.abs(corners[:, 1] - corners[:, 0])
    offset = center_a - center_b
    margin = np.float32(position_threshold) * (size_a + size_b)
    reduced = np.maximum(np.abs(offset) - margin, np.float32(0)) * np.sign(offset)
    if np.all(np.abs(reduced) < np.float32(1e-3)):
        return set()
    dx, dy = reduced / np.linalg.norm(offset)
    relations = set()
    if dx < -0.5:
        relations.add("left of")
    if dx > 0.5:
        relations.add("right of")
    if dy < -0.5:
        relations.add("above")
    if dy > 0.5:
        relations.add("below")
    return relations


def _select_objects(
    detections: ImageDetections, class_names: Sequence[str], threshold: float, options: JudgeOptions
) -> dict[str, _Kept]:
    """Kept detections per class name, in label order; classes with nothing kept are absent."""
    selected: dict[str, _Kept] = {}
    for label, name in enumerate(class_names):
        if label not in detections.by_label:
            continue
        found = detections.by_label[label]
        rows = keep_detections(found.bboxes, threshold, options)
        if rows:
            selected[name] = _Kept(rows, found.bboxes[rows], found.masks[rows])
    return selected


def _color_failure(color: str, class_name: str, count: int, predicted: list[str]) -> str:
    tally = ", ".join(f"{predicted.count(c)} {c}" for c in COLORS if c in predicted)
    return f"expected {color} {class_name}>={count}, found {predicted.count(color)} {color}; and {tally}"


def _position_failure(
    class_name: str, relation: str, subject: _Kept, target: _Kept, count: int, options: JudgeOptions
) -> str | None:
    """Reason for the first (subject, target) pair violating ``relation``, or None when every pair satisfies it."""
    for i in range(count):
        for j in range(len(target.rows)):
            found = relative_position(subject.boxes[i], target.boxes[j], options.position_threshold)
            if relation not in found:
                return f"expected {class_name} {relation} target, found {' and '.join(found)} target"
    return None


def _check_include(
    req: Mapping[str, Any],
    objects: dict[str, _Kept],
    groups: list[_Kept | None],
    image: Image.Image | None,
    color_classifier: ColorClassifier | None,
    options: JudgeOptions,
    reasons: list[str],
    color_calls: list[tuple[str, list[int], list[str]]],
) -> _Kept | None:
    """Check one include requirement, appending its failure reason(s); returns its matched group or None."""
    name, count = req["class"], req["count"]
    kept = objects.get(name)
    n_kept = 0 if kept is None else len(kept.rows)
    if n_kept < count:
        reasons.append(f"expected {name}>={count}, found {n_kept}")
        return None
    found = _Kept(kept.rows[:count], kept.boxes[:count], kept.masks[:count])
    if "color" in req:
        if color_classifier is None or image is None:
            raise ValueError(f"requirement {dict(req)} has a colour but no image/colour classifier was given")
        predicted = list(color_classifier.classify(image, found.boxes, found.masks, name))
        color_calls.append((name, found.rows, predicted))
        if predicted.count(req["color"]) < count:
            reasons.append(_color_failure(req["color"], name, count, predicted))
            return None
    if "position" in req:
        relation, target_index = req["position"]
        target = groups[target_index]
        if target is None:
            reasons.append(f"no target for {name} to be {relation}")
            return None
        failure = _position_failure(name, relation, found, target, count, options)
        if failure is not None:
            reasons.append(failure)
            return None
    return found


def judge_image(
    metadata: Mapping[str, Any],
    detections: ImageDetections,
    image: Image.Image | None,
    color_classifier: ColorClassifier | None,
    class_names: Sequence[str],
    options: JudgeOptions = JudgeOptions(),
) -> Verdict:
    """Judge one image against its prompt metadata, as the official ``evaluate_image`` + ``evaluate`` do.

    Includes are checked in metadata order, then excludes; every requirement is checked (no short-circuit) and each
    failing one adds a line to ``reason``. Only the top-``count`` kept detections of a requirement with a colour are
    colour-classified (once per requirement, and only when at least ``count`` are kept). ``image`` and
    ``color_classifier`` are only used for colour requirements.
    """
    for req in [*metadata.get("include", []), *metadata.get("exclude", [])]:
        if req["class"] not in class_names:
            raise ValueError(f"metadata class {req['class']!r} is not in the judge's class vocabulary")
    threshold = options.counting_threshold if metadata["tag"] == "counting" else options.threshold
    objects = _select_objects(detections, class_names, threshold, options)
    reasons: list[str] = []
    color_calls: list[tuple[str, list[int], list[str]]] = []
    groups: list[_Kept | None] = []
    for req in metadata.get("include", []):
        groups.append(_check_include(req, objects, groups, image, color_classifier, options, reasons, color_calls))
    for req in metadata.get("exclude", []):
        kept = objects.get(req["class"])
        n_kept = 0 if kept is None else len(kept.rows)
        if n_kept >= req["count"]:
            reasons.append(f"expected {req['class']}<{req['count']}, found {n_kept}")
    return Verdict(
        correct=not reasons,
        reason="\n".join(reasons),
        details={name: kept.boxes.tolist() for name, kept in objects.items()},
        kept_rows={name: list(kept.rows) for name, kept in objects.items()},
        color_calls=color_calls,
    )
