"""Shapes-world stand-ins for T2I-R1's vision experts (t2i_r1.md §8.2-§8.3), behind the ``OutcomeJudge`` protocol.

* :class:`ShapesDetectorReward` stands in for the GroundingDINO reward: the exact :class:`ShapesDetector` finds the
  objects, and T2I-R1's object / count / position rules (:mod:`reward_models.detector_rules`, quirks fixed by
  default, ``DetectorRules.official()`` for the official ones) turn its detections into a reward in [0, 1].
* :class:`ShapesColorReward` stands in for GIT-VQA: for each attribute phrase of the prompt ("red circle") 1 when a
  detected object of that shape has that colour (:class:`ShapesColorClassifier`), averaged; with no attribute, the
  fraction of nouns found; spatial and numeracy prompts score ``skip_score`` (0), as GIT does officially.

Both read the prompt's requirements with the offline GenEval-template parser over the world's shape names (every
shapes prompt is a GenEval template), and score a whole batch per call. A box is a detection when the detector's
score exceeds ``box_threshold`` (GroundingDINO's 0.3).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from eval.geneval.types import ImageDetections
from eval.shapes.detector import DetectorConfig, ShapesColorClassifier, ShapesDetector
from eval.shapes.render import ShapesWorld
from reward_models.base import JudgeCost, JudgeOutput, validate_judge_inputs
from reward_models.detector_rules import Detection, DetectorRules, detector_score
from reward_models.requirements import Requirements, RequirementsResolver

__all__ = ["ShapesColorReward", "ShapesDetectorReward", "shape_detections"]


def shape_detections(found: ImageDetections, class_names: Sequence[str], box_threshold: float) -> list[Detection]:
    """The detector's boxes above ``box_threshold`` as rule inputs: phrase = shape name, box normalised to [0, 1]."""
    width, height = found.image_size
    out = []
    for label, dets in found.by_label.items():
        for x1, y1, x2, y2, score in dets.bboxes.tolist():
            if score > box_threshold:
                out.append(Detection.from_xyxy(class_names[label], x1 / width, y1 / height, x2 / width,
                                               y2 / height, score))
    return out


class _ShapesJudge:
    def __init__(self, world, box_threshold: float, detector: DetectorConfig | None) -> None:
        # a ShapesWorld, or a suite config (configs/data/*.yaml) whose world is meant
        self.world = getattr(world, "world", world) or ShapesWorld()
        if not isinstance(self.world, ShapesWorld):
            raise TypeError(f"world must be a ShapesWorld or a ShapesSuiteConfig, got {type(world).__name__}")
        self.detector = ShapesDetector(self.world, detector)
        self.requirements = RequirementsResolver(vocabulary=list(self.world.shapes), parse=True)
        if not 0 <= box_threshold < 1:
            raise ValueError(f"box_threshold must be in [0, 1), got {box_threshold}")
        self.box_threshold = float(box_threshold)

    def _prepare(self, prompts, images, requirements):
        validate_judge_inputs(prompts, images)
        return self.requirements.resolve(prompts, requirements), self.detector.detect(images)


class ShapesDetectorReward(_ShapesJudge):
    """The GroundingDINO stand-in (module docstring); ``world``: a :class:`ShapesWorld` or a suite config (its
    world); ``rules`` default to the fixed quirks."""

    def __init__(self, world: ShapesWorld | None = None, rules: DetectorRules | None = None,
                 box_threshold: float = 0.3, detector: DetectorConfig | None = None) -> None:
        super().__init__(world, box_threshold, detector)
        self.rules = rules if rules is not None else DetectorRules()

    def score(self, prompts: Sequence[str], images: Sequence[Image.Image], *,
              requirements: Sequence[Requirements] | None = None) -> JudgeOutput:
        """Scores ``[B]`` in [0, 1]; component ``num_detections``."""
        needs, found = self._prepare(prompts, images, requirements)
        dets = [shape_detections(f, self.detector.class_names, self.box_threshold) for f in found]
        scores = [detector_score(r, d, self.rules) for r, d in zip(needs, dets)]
        return JudgeOutput(scores=torch.tensor(scores, dtype=torch.float32),
                           components={"num_detections": torch.tensor([float(len(d)) for d in dets])},
                           cost=JudgeCost(forward_passes=len(images), images_scored=len(images)))


class ShapesColorReward(_ShapesJudge):
    """The GIT-VQA stand-in (module docstring)."""

    def __init__(self, world: ShapesWorld | None = None, box_threshold: float = 0.3,
                 skip_tasks: Sequence[str] = ("spatial", "numeracy"), skip_score: float = 0.0,
                 detector: DetectorConfig | None = None) -> None:
        super().__init__(world, box_threshold, detector)
        self.colors = ShapesColorClassifier(self.world)
        self.skip_tasks, self.skip_score = tuple(skip_tasks), float(skip_score)

    def score(self, prompts: Sequence[str], images: Sequence[Image.Image], *,
              requirements: Sequence[Requirements] | None = None) -> JudgeOutput:
        """Scores ``[B]`` in [0, 1]: the fraction of attribute phrases (or nouns) found with their colour."""
        needs, found = self._prepare(prompts, images, requirements)
        scores = [self._one(r, f, im) for r, f, im in zip(needs, found, images)]
        return JudgeOutput(scores=torch.tensor(scores, dtype=torch.float32),
                           cost=JudgeCost(forward_passes=len(images), images_scored=len(images)))

    def _one(self, need: Requirements, found: ImageDetections, image: Image.Image) -> float:
        if need.task_type in self.skip_tasks:
            return self.skip_score
        if not need.nouns:
            return 1.0
        names = self.detector.class_names
        seen: dict[str, set[str]] = {}  # shape -> colours of its confident detections
        for label, dets in found.by_label.items():
            keep = dets.bboxes[:, 4] > self.box_threshold
            if keep.any():
                colours = self.colors.classify(image, dets.bboxes[keep], dets.masks[keep], names[label])
                seen.setdefault(names[label], set()).update(colours)
        phrases = need.attr_nouns or need.nouns
        hits = []
        for phrase in phrases:
            *attributes, noun = phrase.split(" ")
            hits.append(noun in seen and all(a in seen[noun] for a in attributes))
        return float(np.mean(hits))
