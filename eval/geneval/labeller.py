"""GenEval's judge on the real detector as a labeller of generated images (imagegen_cot.md §4.2, §5).

The fine-tuned judges' data is labelled the way GenEval scores: the Mask2Former detector (:mod:`eval.geneval.detectors`)
finds the objects, the CLIP colour classifier (:mod:`eval.geneval.colors`) names their colours and
:func:`eval.geneval.judge.judge_image` decides against the prompt's metadata line. :class:`GenevalLabeller` wraps the
three behind :class:`reward_models.rollouts.Labeller` (``(metadata line, image) -> Verdict``), so the roll-out labelling
of :func:`reward_models.rollouts.sample_paths` runs at real scale with the same components ``scripts/eval_geneval.py``
builds (configs/labeller/geneval.yaml composes them from configs/detector and configs/color_classifier).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

from PIL import Image

from eval.geneval.judge import JudgeOptions, Verdict, judge_image
from eval.geneval.types import ColorClassifier, Detector

__all__ = ["GenevalLabeller"]


class GenevalLabeller:
    """``labeller(metadata_line, image)`` -> GenEval's :class:`~eval.geneval.judge.Verdict` of one image.

    ``options``: the official ``--options`` strings of the judge (thresholds; empty = GenEval's defaults), as
    ``configs/eval/geneval.yaml``'s ``options``. One detector call per image: the protocol judges images one at a time
    (the Mask2Former port's default ``batch_size`` 1 is also what GenEval runs).
    """

    def __init__(self, detector: Detector, color_classifier: ColorClassifier,
                 options: Mapping[str, str] | Sequence[str] | None = None) -> None:
        self.detector = detector
        self.color_classifier = color_classifier
        if isinstance(options, Mapping):  # a Hydra DictConfig too: the official strings, as eval_geneval passes them
            options = {str(k): str(v) for k, v in options.items()}
        self.options = JudgeOptions.from_options(options)
        self.class_names = list(detector.class_names)

    def __call__(self, line: dict, image: Image.Image) -> Verdict:
        (detections,) = self.detector.detect([image])
        if tuple(detections.image_size) != image.size:
            raise ValueError(f"detections are for size {detections.image_size}, image is {image.size} "
                             f"(prompt {line.get('prompt')!r})")
        return judge_image(line, detections, image, self.color_classifier, self.class_names, self.options)
