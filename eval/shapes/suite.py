"""The shapes world's prompt suite: GenEval's six tasks over shape names and the world's palette.

``ShapesSuiteConfig`` is what ``configs/data/shapes*.yaml`` instantiate; :func:`build_shapes_suite` turns it into a
train / eval split that shares no prompt (the eval split is the miniature's "GenEval", the train split the tiny
Show-o's text-image pairs). With five shapes several tasks have fewer possible prompts than their official share
(e.g. 5 single-object prompts): they are exhausted, see :mod:`eval.geneval.suite`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from eval.geneval.suite import SuiteVocabulary, generate_suite, split_suite
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
