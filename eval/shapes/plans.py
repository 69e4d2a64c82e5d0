"""Text plans of rendered scenes: the semantic-level CoT the shapes world's tiny Janus-Pro learns to write.

A plan lists every drawn object with its colour, shape and place, written by a rule from the scene itself
(:func:`scene_plan`)::

    "a red circle at the top left and a blue square at the bottom right"
    "a green triangle in the center, a green triangle on the right and a white triangle at the bottom"

Places are the 3 x 3 regions of the canvas that hold the object's centre (columns left / centre / right, rows
top / middle / bottom, split at thirds), phrased ``at the top left``, ``at the top``, ``on the left``,
``in the center``, ... Objects come in drawing order (the prompt's ``include`` order), so a plan mentions what the
prompt asks first and then fixes what the prompt leaves open (colours of uncoloured objects, where everything goes).
Every plan word is in :data:`PLAN_WORDS` plus the world's colours and shapes (the tiny tokenizer covers them).
"""
from __future__ import annotations

from typing import Sequence

from eval.shapes.render import GroundTruthObject

ROWS = ("top", "middle", "bottom")
COLUMNS = ("left", "center", "right")
PLACES = {
    ("top", "left"): "at the top left", ("top", "center"): "at the top", ("top", "right"): "at the top right",
    ("middle", "left"): "on the left", ("middle", "center"): "in the center", ("middle", "right"): "on the right",
    ("bottom", "left"): "at the bottom left", ("bottom", "center"): "at the bottom",
    ("bottom", "right"): "at the bottom right",
}
PLAN_WORDS = ("a", "an", "and", "at", "the", "on", "in", "top", "bottom", "left", "right", "center")


def region(box: Sequence[float], canvas_size: int) -> tuple[str, str]:
    """(row, column) of the 3 x 3 region holding the centre of ``box`` = (x1, y1, x2, y2), x2/y2 exclusive."""
    if canvas_size < 1:
        raise ValueError(f"canvas_size must be >= 1, got {canvas_size}")
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2

    def third(c: float) -> int:
        return min(2, max(0, int(3 * c / canvas_size)))

    return ROWS[third(cy)], COLUMNS[third(cx)]


def article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def object_phrase(obj: GroundTruthObject, canvas_size: int) -> str:
    """``"a red circle at the top left"``."""
    return f"{article(obj.color)} {obj.color} {obj.shape} {PLACES[region(obj.box, canvas_size)]}"


def scene_plan(objects: Sequence[GroundTruthObject], canvas_size: int) -> str:
    """The plan of a scene: its objects' phrases joined by ``", "`` and a final ``" and "``."""
    if not objects:
        raise ValueError("a plan needs at least one object")
    phrases = [object_phrase(o, canvas_size) for o in objects]
    return phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]


__all__ = ["COLUMNS", "PLACES", "PLAN_WORDS", "ROWS", "article", "object_phrase", "region", "scene_plan"]
