"""The shapes world's prompt suite: GenEval's six tasks over shape names and the world's palette.

``ShapesSuiteConfig`` is what ``configs/data/shapes*.yaml`` instantiate; :func:`build_shapes_suite` turns it into a
train / eval split that shares no prompt (the eval split is the miniature's "GenEval"). With three to five shapes
several tasks have fewer possible prompts than their official share (e.g. 3 single-object prompts): they are
exhausted, see :mod:`eval.geneval.suite`.

What the tiny Show-o learns from is :func:`training_lines`: the suite's train split (``"split"``, a few hundred
lines), or every prompt the vocabulary can phrase except the eval split's (``"space"``; the real Show-o, too, is
trained on far more captions than GenEval has prompts). Either way no eval prompt is ever seen in training.
:func:`images_per_line` balances the tasks: ``color_attr`` has hundreds of possible prompts, ``single_object`` three.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

from eval.geneval.suite import TAGS, SuiteVocabulary, generate_suite, plural, prompt_space, split_suite
from eval.shapes.render import ShapesWorld


def shapes_vocabulary(world: ShapesWorld, counts: tuple[int, ...] = (2, 3, 4)) -> SuiteVocabulary:
    """Classes = the world's shapes, colours = its palette names (every shape may take a colour)."""
    return SuiteVocabulary(classes=world.shapes, colors=world.colors, counts=tuple(counts))


@dataclass(frozen=True)
class ShapesSuiteConfig:
    """Size, seeds and split of a shapes-world suite (``n_prompts`` before exhausting small tasks)."""

    world: ShapesWorld = field(default_factory=ShapesWorld)
    n_prompts: int = 553
    counts: tuple[int, ...] = (2, 3, 4)
    eval_fraction: float = 0.25
    seed: int = 43
    split_seed: int = 0
    images_per_prompt: int = 4

    def __post_init__(self) -> None:
        object.__setattr__(self, "counts", tuple(int(n) for n in self.counts))


@dataclass
class ShapesSuite:
    """A built suite: every line, and its train / eval split (disjoint prompt sets, each in suite order)."""

    config: ShapesSuiteConfig
    lines: list[dict]
    train: list[dict]
    eval: list[dict]


def build_shapes_suite(config: ShapesSuiteConfig | None = None) -> ShapesSuite:
    config = config or ShapesSuiteConfig()
    lines = generate_suite(shapes_vocabulary(config.world, config.counts), config.n_prompts, config.seed)
    train, evaluation = split_suite(lines, config.eval_fraction, config.split_seed)
    return ShapesSuite(config, lines, train, evaluation)


TRAINING_SOURCES = ("split", "space")


def training_lines(suite: ShapesSuite, source: str = "split", per_tag: int | None = None) -> list[dict]:
    """Lines a model may train on: the train split, or the whole prompt space minus the eval split's prompts; with
    ``per_tag`` only the first ``per_tag`` lines of every tag (small runs, tests)."""
    if source == "split":
        lines = list(suite.train)
    elif source == "space":
        held_out = {line["prompt"] for line in suite.eval}
        vocab = shapes_vocabulary(suite.config.world, suite.config.counts)
        lines = [line for line in prompt_space(vocab) if line["prompt"] not in held_out]
    else:
        raise ValueError(f"training source must be one of {TRAINING_SOURCES}, got {source!r}")
    return first_per_task(lines, per_tag)


def first_per_task(lines: Sequence[dict], per_task: int | None) -> list[dict]:
    """The first ``per_task`` lines of every tag (all lines when ``None``), in order."""
    if per_task is None:
        return list(lines)
    seen: dict[str, int] = {}
    kept = []
    for line in lines:
        seen[line["tag"]] = seen.get(line["tag"], 0) + 1
        if seen[line["tag"]] <= per_task:
            kept.append(line)
    return kept


def repeat_per_task(lines: Sequence[dict], images_per_task: int | None, images_per_prompt: int) -> list[dict]:
    """Every line of a tag written ``ceil(images_per_task / (lines of the tag x images_per_prompt))`` times in a row,
    so that every tag gets at least ``images_per_task`` images (``None``: the lines as they are). A repeated line is
    a new prompt index, hence new per-image seeds: more samples of the same prompt, not a new prompt (the table's
    bootstrap counts a prompt's repeats as one prompt, :func:`eval.stats.paired_bootstrap`'s ``units``)."""
    if images_per_task is None:
        return list(lines)
    if images_per_task < 1 or images_per_prompt < 1:
        raise ValueError(f"images_per_task ({images_per_task}) and images_per_prompt ({images_per_prompt}) must be "
                         ">= 1")
    per_tag: dict[str, int] = {}
    for line in lines:
        per_tag[line["tag"]] = per_tag.get(line["tag"], 0) + 1
    return [line for line in lines
            for _ in range(-(-images_per_task // (per_tag[line["tag"]] * images_per_prompt)))]


def images_per_line(lines: Sequence[dict], images_per_prompt: int, images_per_tag: int = 0) -> list[int]:
    """Scenes to render per line: ``images_per_prompt``, raised so that every tag gets about ``images_per_tag``
    scenes in all (``ceil(images_per_tag / lines of the tag)``; ``0`` turns balancing off)."""
    if images_per_prompt < 1 or images_per_tag < 0:
        raise ValueError(f"images_per_prompt must be >= 1 and images_per_tag >= 0, got {images_per_prompt}, "
                         f"{images_per_tag}")
    per_tag = {tag: sum(line["tag"] == tag for line in lines) for tag in TAGS}
    return [max(images_per_prompt, math.ceil(images_per_tag / per_tag[line["tag"]])) for line in lines]


# Words of the six GenEval templates besides class and colour names (eval/geneval/suite.py phrasing).
TEMPLATE_WORDS = ("a", "an", "photo", "of", "and", "left", "right", "above", "below")
COUNT_WORDS = {2: "two", 3: "three", 4: "four"}
# Words of the GenEval judge's failure reasons (eval/geneval/judge.py), split like the word tokenizer splits them
# (``expected square>=1, found 0`` -> expected / square / >= / 1 / , / found / 0): the PARM++ explanations that the
# self-correction fine-tuned Show-o reads.
REASON_WORDS = ("expected", "found", "no", "target", "for", "to", "be", ">=", "<", ",", ";",
                *(str(n) for n in range(10)))


def shapes_words(shapes: Sequence[str], colors: Sequence[str], counts: Sequence[int] = (2, 3, 4)) -> list[str]:
    """Every word of every prompt the suite generator can write for this vocabulary and of the judge's failure
    reasons (sorted, unique)."""
    missing = [n for n in counts if n not in COUNT_WORDS]
    if missing:
        raise ValueError(f"counts {missing} have no number word (known: {sorted(COUNT_WORDS)})")
    words = {*TEMPLATE_WORDS, *REASON_WORDS, *shapes, *(plural(s) for s in shapes), *colors,
             *(COUNT_WORDS[n] for n in counts)}
    return sorted(w.lower() for w in words)
