"""T2I-R1's detector reward rules on detections, with its quirks as flags (t2i_r1.md §8.2, §8.6).

Given the detections of an open-vocabulary detector for the prompt's nouns — phrase, box, confidence — the reward is

* **spatial** prompts: +0.2 for each of ``obj1`` / ``obj2`` detected; with both, each object's most confident box
  and ``+ position / 2``, where ``position`` is 1 for the right direction (the centre offset along the relation's
  axis dominates and IoU < 0.1), ``0.1 / IoU`` for the right direction with IoU >= 0.1, else 0; "near / next to /
  on side of" is 1 when the centres are closer than a threshold on either axis, else ``threshold / distance``.
  Maximum 0.9.
* **numeracy** prompts: per counted object (weight ``1 / #objects``), NMS at IoU 0.5 over its boxes, then 1 if the
  count matches, 0.2 if some were found but the count is wrong, 0 if none.
* any other task: the fraction of nouns detected. No nouns at all: 1.

Official quirks, each a flag of :class:`DetectorRules` (``DetectorRules.official()`` reproduces all of them; the
defaults fix them):

* ``credit_above``: the official position rule has no branch for "above" or "on top of" (only "on the top of" /
  "top of"), so those prompts never earn position credit (max 0.4). Fixed: they count as "on the top of".
* ``near_threshold``: officially 150 on *normalised* box coordinates, so "near" is always satisfied. Fixed:
  ``150 / 384`` of the image side (150 px of a 384-px Janus-Pro image).
* ``nms_on_xyxy``: the official numeracy NMS is fed GroundingDINO's ``(cx, cy, w, h)`` boxes as if they were
  ``(x1, y1, x2, y2)``; most such "boxes" are inverted, overlap nothing, and the count is the raw number of boxes
  above the threshold. Fixed: NMS on corner boxes.
* ``full_phrase``: a multi-word noun is grounded on its first and last word and labelled "first last", so a noun of
  three or more words ("ice cream cone") never matches itself. Fixed: the whole noun.
* ``distinct_same_noun``: a spatial prompt relating a noun to itself raised inside the official reward and scored
  0. Fixed: the two most confident boxes of that noun, in the better of the two orders.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torchvision.ops import nms

from reward_models.requirements import CountInfo, Requirements, SpatialInfo

__all__ = ["Detection", "DetectorRules", "detection_caption", "detector_score", "numeracy_score",
           "object_score", "position_score", "spatial_score"]

HORIZONTAL = {"right": ("on the right of", "right of"), "left": ("on the left of", "left of")}
VERTICAL = {"below": ("on the bottom of", "below"), "top": ("on the top of", "top of")}
NEAR = ("next to", "on side of", "near")
ABOVE = ("above", "on top of")  # no official branch: credited only with ``credit_above``


@dataclass(frozen=True)
class DetectorRules:
    """Rule switches and constants (defaults: quirks fixed; :meth:`official` reproduces T2I-R1)."""

    credit_above: bool = True
    near_threshold: float = 150.0 / 384.0
    nms_on_xyxy: bool = True
    full_phrase: bool = True
    distinct_same_noun: bool = True
    iou_threshold: float = 0.1
    nms_iou: float = 0.5
    presence: float = 0.2
    wrong_count: float = 0.2

    @classmethod
    def official(cls) -> DetectorRules:
        return cls(credit_above=False, near_threshold=150.0, nms_on_xyxy=False, full_phrase=False,
                   distinct_same_noun=False)


@dataclass(frozen=True)
class Detection:
    """One grounded box: ``phrase`` label, ``box`` ``(cx, cy, w, h)`` in [0, 1] (GroundingDINO's output), ``score``."""

    phrase: str
    box: tuple[float, float, float, float]
    score: float

    @classmethod
    def from_xyxy(cls, phrase: str, x1: float, y1: float, x2: float, y2: float, score: float) -> Detection:
        return cls(phrase, ((x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1), score)

    @property
    def xyxy(self) -> tuple[float, float, float, float]:
        cx, cy, w, h = self.box
        return cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2


def detection_caption(nouns: Sequence[str], full_phrase: bool = True) -> tuple[str, list[list[tuple[int, int]]], list[str]]:
    """Caption ``"n1 . n2 ."``-style (``" . ".join(nouns) + "."``), character spans and phrase label per noun.

    Official (``full_phrase=False``): a multi-word noun's spans are its first and last word and its label is those
    two words joined by a space. Fixed: one span over the whole noun, labelled with the noun.
    """
    spans, labels, pointer = [], [], 0
    for noun in nouns:
        words = noun.strip().split(" ")
        if full_phrase or len(words) == 1:
            spans.append([(pointer, pointer + len(noun))])
            labels.append(noun)
        else:
            end = pointer + len(noun)
            spans.append([(pointer, pointer + len(words[0])), (end - len(words[-1]), end)])
            labels.append(f"{words[0]} {words[-1]}")
        pointer += len(noun) + 3  # the noun, then " . "
    return " . ".join(nouns) + ".", spans, labels


def _iou(box1: Sequence[float], box2: Sequence[float]) -> float:
    """IoU of two ``(x1, y1, x2, y2)`` boxes (the official formula: no +1, no guard for degenerate boxes)."""
    width = max(0.0, min(box1[2], box2[2]) - max(box1[0], box2[0]))
    height = max(0.0, min(box1[3], box2[3]) - max(box1[1], box2[1]))
    inter = width * height
    union = (box1[2] - box1[0]) * (box1[3] - box1[1]) + (box2[2] - box2[0]) * (box2[3] - box2[1]) - inter
    return inter / union if union > 0 else 0.0


def position_score(locality: str, box1: Sequence[float], box2: Sequence[float], rules: DetectorRules) -> float:
    """Is ``box1`` (obj1) ``locality`` of ``box2`` (obj2)? Boxes ``(x1, y1, x2, y2)``, y pointing down. In [0, 1]."""
    dx = (box2[0] + box2[2]) / 2 - (box1[0] + box1[2]) / 2  # > 0: obj1 is left of obj2
    dy = (box2[1] + box2[3]) / 2 - (box1[1] + box1[3]) / 2  # > 0: obj1 is above obj2
    iou = _iou(box1, box2)
    if locality in NEAR:
        t = rules.near_threshold
        return 1.0 if abs(dx) < t or abs(dy) < t else t / max(abs(dx), abs(dy))
    if locality in ABOVE and rules.credit_above:
        locality = "on the top of"
    if locality in HORIZONTAL["right"] or locality in HORIZONTAL["left"]:
        right_way = dx < 0 if locality in HORIZONTAL["right"] else dx > 0
        along_axis = abs(dx) > abs(dy)
    elif locality in VERTICAL["below"] or locality in VERTICAL["top"]:
        right_way = dy < 0 if locality in VERTICAL["below"] else dy > 0
        along_axis = abs(dy) > abs(dx)
    else:
        return 0.0  # officially "above" and "on top of" land here
    if not (right_way and along_axis):
        return 0.0
    return 1.0 if iou < rules.iou_threshold else rules.iou_threshold / iou


# Nouns are matched against the detections' phrase labels by their text, as officially: with ``full_phrase`` off a
# noun of three or more words is labelled "first last" and so never matches itself.


def object_score(detections: Sequence[Detection], nouns: Sequence[str]) -> float:
    """Fraction of the nouns found among the detections' phrase labels."""
    found = {d.phrase for d in detections}
    return sum(1.0 for noun in nouns if noun in found) / len(nouns)


def spatial_score(detections: Sequence[Detection], spatial: SpatialInfo, rules: DetectorRules) -> float:
    """Presence of both objects (0.2 each) plus half the position score of their most confident boxes."""
    first, second = spatial.obj1, spatial.obj2
    found = {d.phrase for d in detections}
    score = rules.presence * ((first in found) + (second in found))
    if first not in found or second not in found:
        return score
    if first == second:
        boxes = sorted((d for d in detections if d.phrase == first), key=lambda d: -d.score)
        if not rules.distinct_same_noun or len(boxes) < 2:
            return 0.0  # the official reward raised here and returned 0
        a, b = boxes[0].xyxy, boxes[1].xyxy
        return score + max(position_score(spatial.locality, a, b, rules),
                           position_score(spatial.locality, b, a, rules)) / 2
    best = {}
    for d in detections:  # first most confident box per phrase (torch.argmax keeps the first of ties)
        if d.phrase in (first, second) and (d.phrase not in best or d.score > best[d.phrase].score):
            best[d.phrase] = d
    return score + position_score(spatial.locality, best[first].xyxy, best[second].xyxy, rules) / 2


def numeracy_score(detections: Sequence[Detection], counts: Sequence[CountInfo], rules: DetectorRules) -> float:
    """Per object ``1 / len(counts)`` for the right count after NMS, ``0.2 / len(counts)`` for a wrong one."""
    weight, score = 1.0 / len(counts), 0.0
    for count in counts:
        mine = [d for d in detections if d.phrase == count.obj_name]
        if not mine:
            continue
        boxes = torch.tensor([d.xyxy if rules.nms_on_xyxy else d.box for d in mine], dtype=torch.float32)
        kept = nms(boxes, torch.tensor([d.score for d in mine], dtype=torch.float32), rules.nms_iou)
        score += weight * (1.0 if kept.numel() == count.num else rules.wrong_count)
    return score


def detector_score(requirements: Requirements, detections: Sequence[Detection], rules: DetectorRules) -> float:
    """The detector reward of one image: routed on the task type (spatial, numeracy, anything else -> objects)."""
    if not requirements.nouns:
        return 1.0
    if requirements.task_type == "spatial":
        return spatial_score(detections, requirements.spatial, rules)
    if requirements.task_type == "numeracy":
        return numeracy_score(detections, requirements.numeracy, rules)
    return object_score(detections, requirements.nouns)
