"""The oracle judge of the shapes world: the exact GenEval verdict (GenEval judge + exact shapes detector) used as a
reward, behind the judge protocols (:class:`~reward_models.base.OutcomeJudge` and ``ProcessJudge``).

Search with the oracle bounds what any learned judge can reach on the same candidates: its rows in the miniature
table are marked as oracle rows, and "% of oracle gain" measures how much of that headroom a learned judge captures.
The oracle needs the prompt's GenEval metadata, looked up by prompt text in the benchmark file it is given (the held-out
prompts are unique). Score = 1.0 for an accepted image, 0.0 otherwise; ties go to the lowest candidate index, as with
every judge. It reads the image only through the detector, like the evaluation does, so the oracle row of best-of-N
is exactly "the first accepted candidate, else candidate 0".
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

import torch
from PIL import Image

from eval.geneval.judge import Verdict
from eval.geneval.labeller import GenevalLabeller
from eval.shapes.detector import ShapesColorClassifier, ShapesDetector
from eval.shapes.render import ShapesWorld
from reward_models.base import JudgeCost, JudgeOutput, validate_judge_inputs, validate_step

__all__ = ["ShapesLabeller", "ShapesOracle"]


class ShapesLabeller(GenevalLabeller):
    """The exact label of an image: GenEval's judge on the shapes world's exact detector and colour classifier;
    ``labeller(metadata_line, image)`` -> the judge's :class:`~eval.geneval.judge.Verdict`."""

    def __init__(self, world: ShapesWorld) -> None:
        super().__init__(ShapesDetector(world), ShapesColorClassifier(world))


class ShapesOracle:
    """Exact verdicts as judge scores. ``metadata``: the GenEval metadata file of the prompts it will be asked about."""

    def __init__(self, world: ShapesWorld, metadata: str | os.PathLike) -> None:
        path = Path(metadata)
        if not path.is_file():
            raise FileNotFoundError(f"oracle metadata not found: {path}")
        self.lines: dict[str, dict] = {}
        for number, text in enumerate(path.read_text().splitlines(), start=1):
            if text.strip():
                line = json.loads(text)
                if self.lines.setdefault(line["prompt"], line) != line:
                    raise ValueError(f"{path}:{number}: prompt {line['prompt']!r} appears with two metadata lines")
        self.label = ShapesLabeller(world)

    def verdicts(self, prompts: Sequence[str], images: Sequence[Image.Image]) -> list[Verdict]:
        unknown = [p for p in prompts if p not in self.lines]
        if unknown:
            raise KeyError(f"the oracle has no metadata for prompt(s) {unknown[:3]}")
        return [self.label(self.lines[p], image) for p, image in zip(prompts, images)]

    def score(self, prompts: Sequence[str], images: Sequence[Image.Image]) -> JudgeOutput:
        validate_judge_inputs(prompts, images)
        correct = torch.tensor([float(v.correct) for v in self.verdicts(prompts, images)], dtype=torch.float64)
        return JudgeOutput(scores=correct, components={"answer_yes": correct.clone()},
                           cost=JudgeCost(images_scored=len(images)))

    def score_steps(self, prompts: Sequence[str], step_images: Sequence[Image.Image], step: int,
                    num_steps: int) -> JudgeOutput:
        validate_step(step, num_steps)
        return self.score(prompts, step_images)
