"""GenEval-style prompt suites over any object / colour vocabulary.

GenEval (Ghosh et al. 2023, §3 of ``reference/geneval.md``) has six tasks, each a family of metadata lines in a fixed
schema (``tag``, ``include``, optional ``exclude``, ``prompt``) and a fixed prompt phrasing. This module reproduces the
schema, the phrasing and the per-task proportions of the official 553 lines for an arbitrary vocabulary (COCO names,
or the shapes world's ``circle``/``square``/...), seeded, and splits a suite into train / eval parts that share no
prompt. Nothing here is COCO-specific: the official "no colour for person" rule is the vocabulary's
``no_color_classes``.

The official generator draws 100 candidates per task and drops duplicates; we instead draw *unique* lines up to a
per-task target (the official counts scaled to the requested size). A task whose prompt space is smaller than its
target is exhausted (every possible line once), as the official ``single_object`` task is (all 80 classes).
"""
from __future__ import annotations

import itertools
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from common.io import atomic_write_text

TAGS: tuple[str, ...] = ("single_object", "two_object", "counting", "colors", "position", "color_attr")
# Lines per tag in the official prompts/evaluation_metadata.jsonl (553 lines; checked against the file in the tests).
OFFICIAL_TAG_COUNTS: dict[str, int] = {
    "single_object": 80, "two_object": 99, "counting": 80, "colors": 94, "position": 100, "color_attr": 100,
}
# Relation wording of the official position prompts and of the judge's relative_position().
RELATIONS: tuple[str, ...] = ("left of", "right of", "above", "below")
GENEVAL_COLORS: tuple[str, ...] = (
    "red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white",
)
NUMBER_WORDS: dict[int, str] = {
    2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight", 9: "nine", 10: "ten",
}

Metadata = dict


@dataclass(frozen=True)
class SuiteVocabulary:
    """What a suite may mention.

    ``counts`` are the N of counting prompts (official: 2, 3, 4); ``no_color_classes`` never get a colour (official:
    ``("person",)`` for the COCO vocabulary).
    """

    classes: tuple[str, ...]
    colors: tuple[str, ...] = GENEVAL_COLORS
    counts: tuple[int, ...] = (2, 3, 4)
    relations: tuple[str, ...] = RELATIONS
    no_color_classes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("classes", "colors", "counts", "relations", "no_color_classes"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        for name in ("classes", "colors", "counts", "relations"):
            values = getattr(self, name)
            if not values:
                raise ValueError(f"SuiteVocabulary.{name} must not be empty")
            if len(set(values)) != len(values):
                raise ValueError(f"SuiteVocabulary.{name} has duplicates: {values}")
        bad_counts = [n for n in self.counts if n not in NUMBER_WORDS]
        if bad_counts:
            raise ValueError(
                f"SuiteVocabulary.counts {bad_counts} have no number word (allowed {sorted(NUMBER_WORDS)})"
            )
        bad_rel = [r for r in self.relations if r not in RELATIONS]
        if bad_rel:
            raise ValueError(f"SuiteVocabulary.relations {bad_rel} are not GenEval relations {RELATIONS}")
        unknown = [c for c in self.no_color_classes if c not in self.classes]
        if unknown:
            raise ValueError(f"SuiteVocabulary.no_color_classes {unknown} are not in classes")

    @property
    def color_classes(self) -> tuple[str, ...]:
        return tuple(c for c in self.classes if c not in self.no_color_classes)


# ----------------------------------------------------------------------------------------------- phrasing + schema
def article(word: str) -> str:
    """Official rule: "an" iff the word starts with a vowel letter ("an orange", "a umbrella" never occurs)."""
    return "an" if word[:1] in "aeiou" else "a"


def plural(word: str) -> str:
    """Official rule: "es" after a final "s", else "s" (hence the official "toothbrushs")."""
    return word + ("es" if word.endswith("s") else "s")


def single_object(cls: str) -> Metadata:
    return {"tag": "single_object", "include": [{"class": cls, "count": 1}],
            "prompt": f"a photo of {article(cls)} {cls}"}


def two_object(first: str, second: str) -> Metadata:
    return {"tag": "two_object", "include": [{"class": first, "count": 1}, {"class": second, "count": 1}],
            "prompt": f"a photo of {article(first)} {first} and {article(second)} {second}"}


def counting(cls: str, n: int) -> Metadata:
    return {"tag": "counting", "include": [{"class": cls, "count": n}], "exclude": [{"class": cls, "count": n + 1}],
            "prompt": f"a photo of {NUMBER_WORDS[n]} {plural(cls)}"}


def colors(cls: str, color: str) -> Metadata:
    return {"tag": "colors", "include": [{"class": cls, "count": 1, "color": color}],
            "prompt": f"a photo of {article(color)} {color} {cls}"}


def position(subject: str, relation: str, reference: str) -> Metadata:
    """"subject relation reference"; the official line lists the reference first, the subject second -> group 0."""
    return {"tag": "position",
            "include": [{"class": reference, "count": 1},
                        {"class": subject, "count": 1, "position": [relation, 0]}],
            "prompt": f"a photo of {article(subject)} {subject} {relation} {article(reference)} {reference}"}


def color_attr(first: tuple[str, str], second: tuple[str, str]) -> Metadata:
    """``first`` / ``second`` = (class, colour)."""
    (c1, k1), (c2, k2) = first, second
    return {"tag": "color_attr",
            "include": [{"class": c1, "count": 1, "color": k1}, {"class": c2, "count": 1, "color": k2}],
            "prompt": f"a photo of {article(k1)} {k1} {c1} and {article(k2)} {k2} {c2}"}


# ------------------------------------------------------------------------------------------ prompt spaces per tag
def _pairs(items: Sequence[str]) -> Iterator[tuple[str, str]]:
    return itertools.permutations(items, 2)


def _enumerate(tag: str, v: SuiteVocabulary) -> Iterator[Metadata]:
    """Every distinct line of a tag, in a fixed order."""
    spaces: dict[str, Callable[[], Iterable[Metadata]]] = {
        "single_object": lambda: (single_object(c) for c in v.classes),
        "two_object": lambda: (two_object(a, b) for a, b in _pairs(v.classes)),
        "counting": lambda: (counting(c, n) for c in v.classes for n in v.counts),
        "colors": lambda: (colors(c, k) for c in v.color_classes for k in v.colors),
        "position": lambda: (position(a, r, b) for a, b in _pairs(v.classes) for r in v.relations),
        "color_attr": lambda: (color_attr((a, ka), (b, kb)) for a, b in _pairs(v.color_classes)
                               for ka, kb in _pairs(v.colors)),
    }
    return iter(spaces[tag]())


def prompt_space(vocab: SuiteVocabulary, tags: Sequence[str] = TAGS) -> list[Metadata]:
    """Every distinct line of every tag in ``tags`` (tag order, then a fixed order within a tag)."""
    unknown = [t for t in tags if t not in TAGS]
    if unknown:
        raise ValueError(f"unknown tags {unknown}; GenEval tags are {TAGS}")
    return [md for tag in tags for md in _enumerate(tag, vocab)]


def _sample(tag: str, v: SuiteVocabulary, rng: np.random.Generator) -> Metadata:
    """One uniformly drawn line of a tag (the official per-task draws)."""
    def pick(items: Sequence, k: int = 1) -> list:
        return [items[i] for i in rng.choice(len(items), size=k, replace=False)]

    samplers: dict[str, Callable[[], Metadata]] = {
        "single_object": lambda: single_object(*pick(v.classes)),
        "two_object": lambda: two_object(*pick(v.classes, 2)),
        "counting": lambda: counting(*pick(v.classes), int(*pick(v.counts))),
        "colors": lambda: colors(*pick(v.color_classes), *pick(v.colors)),
        "position": lambda: _sample_position(v, pick),
        "color_attr": lambda: color_attr(*zip(pick(v.color_classes, 2), pick(v.colors, 2))),
    }
    return samplers[tag]()


def _sample_position(v: SuiteVocabulary, pick: Callable) -> Metadata:
    subject, reference = pick(v.classes, 2)
    return position(subject, pick(v.relations)[0], reference)


def tag_capacity(tag: str, v: SuiteVocabulary) -> int:
    """Number of distinct lines a tag can have over the vocabulary."""
    n, m, k = len(v.classes), len(v.color_classes), len(v.colors)
    capacities = {
        "single_object": n, "two_object": n * (n - 1), "counting": n * len(v.counts), "colors": m * k,
        "position": n * (n - 1) * len(v.relations), "color_attr": m * (m - 1) * k * (k - 1),
    }
    return capacities[tag]


def tag_targets(n_prompts: int, weights: dict[str, int] | None = None) -> dict[str, int]:
    """Split ``n_prompts`` over the tags in proportion to ``weights`` (official counts) by largest remainder."""
    weights = dict(OFFICIAL_TAG_COUNTS if weights is None else weights)
    if set(weights) != set(TAGS) or any(w < 0 for w in weights.values()) or sum(weights.values()) == 0:
        raise ValueError(f"tag weights must give a non-negative weight to each of {TAGS}, got {weights}")
    total = sum(weights.values())
    exact = {t: n_prompts * weights[t] / total for t in TAGS}
    targets = {t: int(np.floor(exact[t])) for t in TAGS}
    by_remainder = sorted(TAGS, key=lambda t: (-(exact[t] - targets[t]), TAGS.index(t)))
    for t in by_remainder[: n_prompts - sum(targets.values())]:
        targets[t] += 1
    return targets


def _key(md: Metadata) -> str:
    return json.dumps(md, sort_keys=True)


def _unique_lines(tag: str, v: SuiteVocabulary, n: int, rng: np.random.Generator) -> list[Metadata]:
    capacity = tag_capacity(tag, v)
    if capacity <= 4 * n:
        # Small space: enumerate and take a random subset (exact, no rejection loop).
        space = list(_enumerate(tag, v))
        return [space[i] for i in rng.permutation(len(space))[:n]]
    lines: dict[str, Metadata] = {}
    while len(lines) < n:
        md = _sample(tag, v, rng)
        lines.setdefault(_key(md), md)
    return list(lines.values())


def generate_suite(
    vocab: SuiteVocabulary, n_prompts: int = 553, seed: int = 43, weights: dict[str, int] | None = None
) -> list[Metadata]:
    """A seeded GenEval-style suite: unique metadata lines grouped by tag in the official tag order.

    Each tag gets ``min(target, capacity)`` lines, ``target`` from :func:`tag_targets` (official proportions unless
    ``weights`` says otherwise); see the module docstring for exhausted tags.
    """
    if n_prompts < 0:
        raise ValueError(f"n_prompts must be >= 0, got {n_prompts}")
    targets = tag_targets(n_prompts, weights)
    suite: list[Metadata] = []
    for i, tag in enumerate(TAGS):
        # One child stream per tag so that changing one tag's target leaves the others' lines unchanged.
        rng = np.random.default_rng([seed, i])
        suite.extend(_unique_lines(tag, vocab, min(targets[tag], tag_capacity(tag, vocab)), rng))
    return suite


def split_suite(
    suite: Sequence[Metadata], eval_fraction: float = 0.25, seed: int = 0
) -> tuple[list[Metadata], list[Metadata]]:
    """Split into (train, eval) that share no prompt text, stratified by tag, each keeping the suite's order.

    Every tag with >= 2 distinct prompts gets at least one prompt on each side. Lines with the same prompt text
    always go to the same side.
    """
    if not 0.0 < eval_fraction < 1.0:
        raise ValueError(f"eval_fraction must be in (0, 1), got {eval_fraction}")
    rng = np.random.default_rng(seed)
    eval_prompts: set[str] = set()
    for tag in TAGS:
        prompts = sorted({md["prompt"] for md in suite if md["tag"] == tag})
        if not prompts:
            continue
        n_eval = int(round(eval_fraction * len(prompts)))
        n_eval = min(max(n_eval, 1), len(prompts) - 1) if len(prompts) >= 2 else 0
        eval_prompts.update(prompts[i] for i in rng.permutation(len(prompts))[:n_eval])
    train = [md for md in suite if md["prompt"] not in eval_prompts]
    evaluation = [md for md in suite if md["prompt"] in eval_prompts]
    return train, evaluation


# ------------------------------------------------------------------------------------------------ validation + IO
_KEY_ORDERS = (["tag", "include", "prompt"], ["tag", "include", "exclude", "prompt"])


def validate_metadata(md: object, where: str = "metadata", vocab: SuiteVocabulary | None = None) -> None:
    """Raise ``ValueError`` naming ``where``, the field and the value unless ``md`` follows the official schema.

    Schema (§2.2): keys ``tag, include[, exclude], prompt`` in that order; ``include`` a non-empty list of
    ``{class, count[, color][, position]}``; ``position`` = ``[relation, index of an earlier include]``; ``exclude``
    a list of ``{class, count}``; ``prompt`` starts with "a photo of". With ``vocab``, names must be in it.
    """
    def fail(field: str, value: object, why: str) -> None:
        raise ValueError(f"{where}: field {field!r} = {value!r}: {why}")

    if not isinstance(md, dict):
        fail("<line>", md, "must be a JSON object")
    if list(md) not in _KEY_ORDERS:
        fail("<keys>", list(md), f"must be one of {_KEY_ORDERS}")
    if md["tag"] not in TAGS:
        fail("tag", md["tag"], f"must be one of {TAGS}")
    if not isinstance(md["prompt"], str) or not md["prompt"].startswith("a photo of "):
        fail("prompt", md["prompt"], "must be a string starting with 'a photo of '")
    if not isinstance(md["include"], list) or not md["include"]:
        fail("include", md["include"], "must be a non-empty list")
    for i, req in enumerate(md["include"]):
        _validate_requirement(req, i, f"include[{i}]", fail, vocab)
    for i, req in enumerate(md.get("exclude", [])):
        if not isinstance(req, dict) or list(req) != ["class", "count"]:
            fail(f"exclude[{i}]", req, "must be {'class', 'count'}")
        _validate_requirement(req, i, f"exclude[{i}]", fail, vocab)


def _validate_requirement(req: object, index: int, field: str, fail: Callable, vocab: SuiteVocabulary | None) -> None:
    if not isinstance(req, dict) or list(req)[:2] != ["class", "count"]:
        fail(field, req, "must be an object starting with 'class', 'count'")
    extra = [k for k in req if k not in ("class", "count", "color", "position")]
    if extra:
        fail(field, req, f"unknown keys {extra}")
    if not isinstance(req["class"], str) or (vocab is not None and req["class"] not in vocab.classes):
        fail(f"{field}.class", req["class"], "unknown class")
    if type(req["count"]) is not int or req["count"] < 1:
        fail(f"{field}.count", req["count"], "must be an integer >= 1")
    if "color" in req and (not isinstance(req["color"], str)
                           or (vocab is not None and req["color"] not in vocab.colors)):
        fail(f"{field}.color", req["color"], "unknown colour")
    if "position" in req:
        pos = req["position"]
        if (not isinstance(pos, list) or len(pos) != 2 or pos[0] not in RELATIONS
                or type(pos[1]) is not int or not 0 <= pos[1] < index):
            fail(f"{field}.position", pos, f"must be [relation in {RELATIONS}, index of an earlier include]")


def load_suite(path: str | os.PathLike) -> list[Metadata]:
    """Read a metadata JSONL file (one line per prompt), validating every line (errors name file:line)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"suite file not found: {path}")
    suite = []
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            md = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}:{lineno}: not valid JSON ({err})") from err
        validate_metadata(md, where=f"{path}:{lineno}")
        suite.append(md)
    return suite


def save_suite(path: str | os.PathLike, suite: Sequence[Metadata]) -> None:
    """Write the official format (``json.dumps`` default separators, one line each), atomically."""
    atomic_write_text(path, "".join(json.dumps(md) + "\n" for md in suite))
