"""The official T2I-CompBench scoring rules as pure functions (reference ``t2i_compbench_wise.md`` §2–§5).

No model here: questions from noun phrases and the BLIP-VQA product (§2), the 2D spatial geometry and image score
(§3.1), the numeracy parse / de-duplication / score (§3.3), and the complex category's 3-in-1 combination (§5).
Each function cites the rule it implements; tests derive their expected values by hand from the reference.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from eval.t2i_compbench.parsing import NounPhraseParser

__all__ = [
    "Detection", "attribute_questions", "blip_image_score", "complex_objects", "complex_score", "count_targets",
    "dedup_detections", "infer_objects", "numeracy_score", "read_objects_file", "singularize", "official_frame_scale", "pre_question", "remove_adjectives",
    "simple_objects", "spatial_image_score", "spatial_relation", "spatial_relation_score",
]

# ----------------------------------------------------------------------------------------------- §2 BLIP-VQA
DROPPED_CHUNKS = frozenset({"top", "the side", "the left", "the right"})
MAX_PHRASES = 8  # --np_num


def pre_question(question: str, max_words: int = 50) -> str:
    """BLIP's question normalisation: lower-case, delete ``. ! " ( ) * # : ; ~``, right-strip, cut to 50 words."""
    question = re.sub(r"[.!\"()*#:;~]", "", question.lower()).rstrip(" ")
    words = question.split(" ")
    return " ".join(words[:max_words]) if len(words) > max_words else question


def attribute_questions(parser: NounPhraseParser, prompt: str, max_phrases: int = MAX_PHRASES) -> list[str]:
    """One question per noun chunk (``"<chunk>?"``, normalised), minus the drop-list, at most ``max_phrases``."""
    chunks = [c for c in parser.noun_chunks(prompt) if c not in DROPPED_CHUNKS][:max_phrases]
    return [pre_question(f"{chunk}?") for chunk in chunks]


def blip_image_score(yes_probabilities: Sequence[float]) -> float:
    """Image score = product of the per-phrase answers, each stored as a 4-decimal string, multiplied in float32
    (the official reward tensor), written with 4 decimals. No phrase -> every slot counts as 1 -> 1.0."""
    answers = np.array([float(f"{p:.4f}") for p in yes_probabilities], dtype=np.float32)
    product = np.float32(1.0)
    for a in answers:
        product = np.float32(product * a)
    return float(f"{float(product):.4f}")


# ----------------------------------------------------------------------------------------------- §3 detection
@dataclass(frozen=True)
class Detection:
    """One detected object: class name, confidence and ``(x_min, y_min, x_max, y_max)`` in pixels."""

    label: str
    score: float
    box: tuple[float, float, float, float]


def official_frame_scale(width: int, height: int, short: int = 479, max_size: int = 480) -> float:
    """Factor from image pixels to the detector frame of the official evaluator, ``Resize(479, max_size=480)``:
    short side to 479 unless the long side would pass 480 (then long side 480). 512² -> 479²."""
    s, l = min(width, height), max(width, height)
    scale = short / s
    if l * scale > max_size:
        scale = max_size / l
    return scale


SPATIAL_RELATIONS = ("on side of", "next to", "near", "on the left of", "on the right of", "on the bottom of",
                     "on the top of", "on top of")
PERSON_WORDS = frozenset({"girl", "boy", "man", "woman"})


def spatial_relation(prompt: str) -> str | None:
    """First relation of the official list contained in the prompt (substring test), else None."""
    return next((r for r in SPATIAL_RELATIONS if r in prompt), None)


def _iou(a: Sequence[float], b: Sequence[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0  # two zero-area boxes: the official code divides by zero


def spatial_relation_score(relation: str | None, box1: Sequence[float], box2: Sequence[float],
                           iou_threshold: float = 0.1, distance_threshold: float = 150.0) -> float:
    """The official soft relation score of object 1 ``relation`` object 2 (boxes in the 479-px frame, y down).

    dx, dy = centre of box 2 minus centre of box 1. near / next to / on side of: 1 if |dx| or |dy| < 150, else
    150 / max(|dx|, |dy|). Left of: dx > 0 and |dx| > |dy| (right of: dx < 0; top of: dy > 0 and |dy| > |dx|;
    bottom of: dy < 0), then 1 if IoU < 0.1 else 0.1 / IoU; otherwise 0. ``on top of`` has no branch: 0.
    """
    dx = (box2[0] + box2[2]) / 2 - (box1[0] + box1[2]) / 2
    dy = (box2[1] + box2[3]) / 2 - (box1[1] + box1[3]) / 2
    iou = _iou(box1, box2)
    if relation in ("next to", "on side of", "near"):
        if abs(dx) < distance_threshold or abs(dy) < distance_threshold:
            return 1.0
        return distance_threshold / max(abs(dx), abs(dy))
    directional = {
        "on the left of": (dx > 0, abs(dx) > abs(dy)),
        "on the right of": (dx < 0, abs(dx) > abs(dy)),
        "on the top of": (dy > 0, abs(dy) > abs(dx)),
        "on the bottom of": (dy < 0, abs(dy) > abs(dx)),
    }
    if relation not in directional:
        return 0.0
    side, dominant = directional[relation]
    if not (side and dominant):
        return 0.0
    return 1.0 if iou < iou_threshold else iou_threshold / iou


def _best(detections: Sequence[Detection], name: str | None) -> Detection | None:
    """The highest-scoring detection whose class equals ``name`` exactly (detections are score-sorted)."""
    return None if name is None else next((d for d in detections if d.label == name), None)


def spatial_image_score(relation: str | None, obj1: str | None, obj2: str | None,
                        detections: Sequence[Detection], cut: float = 0.5) -> tuple[float, dict]:
    """Official 2D image score: both found -> 0.25·s1 + 0.25·s2 + 0.5·rel; one found -> 0.25·s; none -> 0; then
    any value below ``cut`` (0.5) becomes 0. girl/boy/man/woman are matched as ``person``. Returns (score, details).
    """
    obj1 = "person" if obj1 in PERSON_WORDS else obj1
    obj2 = "person" if obj2 in PERSON_WORDS else obj2
    detections = sorted(detections, key=lambda d: -d.score)
    d1, d2 = _best(detections, obj1), _best(detections, obj2)
    rel = None
    if d1 is not None and d2 is not None:
        rel = spatial_relation_score(relation, d1.box, d2.box)
        score = 0.25 * d1.score + 0.25 * d2.score + rel / 2
    elif d1 is not None:
        score = 0.25 * d1.score
    elif d2 is not None:
        score = 0.25 * d2.score
    else:
        score = 0.0
    score = 0.0 if score < cut else score
    details = {"relation": relation, "objects": [obj1, obj2], "found": [d1 is not None, d2 is not None],
               "relation_score": rel}
    return score, details


def simple_objects(parser: NounPhraseParser, prompt: str) -> tuple[str | None, str | None]:
    """Objects of a simple spatial prompt: the first and the last token tagged NOUN."""
    nouns = [t.text for t in parser.tokens(prompt) if t.pos == "NOUN"]
    return (nouns[0], nouns[-1]) if nouns else (None, None)


COMPLEX_PREPOSITIONS = ("on top of", "on bottom of", "on the left", "on the right", "next to", "on side of", "near")


def complex_objects(parser: NounPhraseParser, prompt: str) -> tuple[str | None, str | None]:
    """``--complex True`` objects: for each preposition (1–3 token match), the nearest NOUN/PROPN before it and
    the next NOUN after it (else a PROPN not followed by a PROPN); exactly two objects or ``(None, None)``."""
    toks = parser.tokens(prompt)
    texts = [t.text for t in toks]
    objects = []
    for i in range(len(toks)):
        k = next((n for n in (3, 2, 1) if " ".join(texts[i:i + n]) in COMPLEX_PREPOSITIONS), None)
        if k is None:
            continue
        before = next((toks[j].text for j in range(i - 1, -1, -1) if toks[j].pos in ("NOUN", "PROPN")), None)
        if before is not None:
            objects.append(before)
        after = next((toks[j].text for j in range(i + k, len(toks)) if toks[j].pos == "NOUN"), None)
        if after is None:
            after = next((toks[j].text for j in range(i + k, len(toks) - 1)
                          if toks[j].pos == "PROPN" and toks[j + 1].pos != "PROPN"), None)
        if after is not None:
            objects.append(after)
    return (objects[0], objects[1]) if len(objects) == 2 else (None, None)


def remove_adjectives(parser: NounPhraseParser, prompt: str) -> str:
    """The complex category's CLIP text: tokens tagged ADJ removed, the rest joined by single spaces."""
    return " ".join(t.text for t in parser.tokens(prompt) if t.pos != "ADJ")


# ----------------------------------------------------------------------------------------------- §3.3 numeracy
NUMBER_WORDS = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
                "eight": 8}
NUMERACY_ALIASES = {"boy": "person", "girl": "person", "man": "person", "woman": "person", "ship": "boat",
                    "telivision": "tv", "goldfish": "fish", "painting": "picture"}


def count_targets(tokens: Sequence[str], vocabulary: Mapping[str, str]) -> list[tuple[str, int]]:
    """``(singular object, count)`` pairs of a numeracy prompt (official parse, one- and two-word objects).

    ``vocabulary`` maps every known singular and plural (lower-case) to its singular (``new_objects.txt``). A number
    word (case-sensitive, as official: ``A`` is not one) followed by a known object counts it: a/an/one + singular
    -> 1, two…eight + plural -> the number. The official script crashes or desynchronises its counts on a/an +
    plural and on two…eight + singular; here those count 1 and the number's value (docs/benchmarks.md).
    """
    singulars = set(vocabulary.values())
    targets = []
    for i, w in enumerate(tokens):
        if w not in NUMBER_WORDS:
            continue
        two = f"{tokens[i + 1]} {tokens[i + 2]}" if i + 2 < len(tokens) else None
        one = tokens[i + 1] if i + 1 < len(tokens) else None
        name = two if two in vocabulary else one if one in vocabulary else None
        if name is None:
            continue
        if name in singulars and w in ("a", "an", "one"):
            targets.append((name, 1))
        else:
            targets.append((vocabulary[name], NUMBER_WORDS[w]))
    return targets


def read_objects_file(path) -> dict[str, str]:
    """``new_objects.txt`` (lines ``singular - plural``) as {singular or plural: singular}."""
    vocabulary: dict[str, str] = {}
    for lineno, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        if " - " not in line:
            raise ValueError(f"{path}:{lineno}: expected 'singular - plural', got {line!r}")
        singular, plural = (part.strip().lower() for part in line.split(" - ", 1))
        vocabulary.setdefault(singular, singular)
        vocabulary.setdefault(plural, singular)
    return vocabulary


_IRREGULAR_PLURALS = {"men": "man", "women": "woman", "people": "person", "mice": "mouse", "knives": "knife",
                      "geese": "goose", "teeth": "tooth", "feet": "foot", "children": "child", "leaves": "leaf"}
_INVARIANT = frozenset({"fish", "sheep", "deer", "shrimp", "goldfish", "moose", "salmon", "bison", "aircraft"})


def singularize(word: str) -> str:
    """English singular of a plural noun (irregulars, invariants, -ies, -ches/-shes/-xes/-sses/-oes, -s)."""
    if word in _IRREGULAR_PLURALS:
        return _IRREGULAR_PLURALS[word]
    if word in _INVARIANT or not word.endswith("s") or word.endswith("ss"):
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("ches", "shes", "xes", "sses", "oes")):
        return word[:-2]
    return word[:-1]


def infer_objects(prompts: Sequence[Sequence[str]]) -> dict[str, str]:
    """A vocabulary like ``new_objects.txt`` inferred from tokenised numeracy prompts, for when the official file
    is not at hand: every word after two…eight is a plural (singular by :func:`singularize`), every word after
    ``one`` a singular. Words after a/an only count when known this way (``a lively crowd`` does not)."""
    vocabulary: dict[str, str] = {}
    for tokens in prompts:
        for w, nxt in zip(tokens, tokens[1:]):
            nxt = nxt.lower()
            if not nxt.isalpha():
                continue
            if w in NUMBER_WORDS and NUMBER_WORDS[w] > 1:
                vocabulary[nxt] = singularize(nxt)
                vocabulary.setdefault(singularize(nxt), singularize(nxt))
            elif w == "one":
                vocabulary.setdefault(nxt, nxt)
    return vocabulary


def _same_object(a: Sequence[float], b: Sequence[float]) -> bool:
    """Official duplicate test (+1-pixel areas): IoU > 0.9 or the intersection covers > 90 % of either box."""
    inter = max(0.0, min(a[2], b[2]) - max(a[0], b[0]) + 1) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]) + 1)
    area_a = (a[2] - a[0] + 1) * (a[3] - a[1] + 1)
    area_b = (b[2] - b[0] + 1) * (b[3] - b[1] + 1)
    return inter / (area_a + area_b - inter) > 0.9 or inter / area_a > 0.9 or inter / area_b > 0.9


def dedup_detections(detections: Sequence[Detection]) -> list[Detection]:
    """Drop a detection when an earlier kept one of the same class is the same object (score order)."""
    kept: list[Detection] = []
    for d in sorted(detections, key=lambda d: -d.score):
        if not any(k.label == d.label and _same_object(d.box, k.box) for k in kept):
            kept.append(d)
    return kept


def numeracy_score(targets: Sequence[tuple[str, int]], detections: Sequence[Detection]) -> tuple[float, dict]:
    """Each of the n targets gives 0.5/n if its class is present and 0.5/n more if the de-duplicated count equals
    the target exactly. Aliases as official; a target not an exact class renames every detected class containing
    it. No target -> 0 (the official script divides by zero)."""
    if not targets:
        return 0.0, {"targets": [], "counts": []}
    labels = [d.label for d in dedup_detections(detections)]
    weight = 1.0 / len(targets)
    score, counts = 0.0, []
    for name, count in targets:
        name = NUMERACY_ALIASES.get(name, name)
        if name not in labels:
            labels = [name if name in label else label for label in labels]
        found = labels.count(name)
        counts.append(found)
        if found:
            score += 0.5 * weight + (0.5 * weight if found == count else 0.0)
    return score, {"targets": [list(t) for t in targets], "counts": counts}


# ----------------------------------------------------------------------------------------------- §5 3-in-1
def complex_score(kind: str, attribute: float, spatial: float, clip: float) -> float:
    """3-in-1: spatial -> (attr + spatial)/2; action -> (attr + CLIP)/2; spatial_action -> mean of all three."""
    if kind == "spatial":
        return (spatial + attribute) * 0.5
    if kind == "action":
        return (clip + attribute) * 0.5
    if kind == "spatial_action":
        return (attribute + spatial + clip) / 3
    raise ValueError(f"complex prompt kind must be spatial, action or spatial_action, got {kind!r}")
