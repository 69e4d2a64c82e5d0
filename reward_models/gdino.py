"""GroundingDINO object / count / position reward of T2I-R1 through transformers (t2i_r1.md §8.2, §8.6).

The detector is ``GroundingDinoForObjectDetection`` loaded from a local directory in the transformers format (e.g.
``IDEA-Research/grounding-dino-tiny``, the conversion of the ``groundingdino_swint_ogc`` weights T2I-R1 uses).
Per image, the caption ``"n1 . n2."`` of the prompt's nouns is grounded as the official code does it: each noun's
character spans are mapped to text tokens, the noun's confidence for a query box is the mean over those tokens of the
sigmoid logits (the official positive map, normalised by ``count + 1e-6``), and every box whose confidence exceeds
``box_threshold`` (0.3) becomes a :class:`~reward_models.detector_rules.Detection` labelled with the noun's phrase.
The rules of :mod:`reward_models.detector_rules` then turn the detections into the reward. Images and their
captions are detected in batches (padded captions; a batch equals its singletons up to float rounding).
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image
from transformers import BatchEncoding, GroundingDinoForObjectDetection, GroundingDinoProcessor

from reward_models.base import JudgeCost, JudgeOutput, validate_judge_inputs
from reward_models.detector_rules import Detection, DetectorRules, detection_caption, detector_score
from reward_models.local_model import check_model_directory, load_local, torch_dtype
from reward_models.requirements import Requirements, RequirementsResolver

__all__ = ["GroundingDinoReward", "positive_map"]


def _char_to_token(encoding: BatchEncoding, row: int, chars: Sequence[int]) -> int | None:
    """The token of the first of ``chars`` that falls on a token (the official fallbacks for spaces / punctuation)."""
    for char in chars:
        if char >= 0:
            token = encoding.char_to_token(row, char)
            if token is not None:
                return token
    return None


def positive_map(encoding: BatchEncoding, row: int, spans: Sequence[Sequence[tuple[int, int]]], length: int) -> torch.Tensor:
    """``[n_phrases, length]``: 1 on each phrase's tokens, each row divided by ``(its count + 1e-6)`` (official)."""
    out = torch.zeros(len(spans), length)
    for j, phrase_spans in enumerate(spans):
        for begin, end in phrase_spans:
            first = _char_to_token(encoding, row, (begin, begin + 1, begin + 2))
            last = _char_to_token(encoding, row, (end - 1, end - 2, end - 3))
            if first is not None and last is not None:
                out[j, first : last + 1] = 1.0
    return out / (out.sum(dim=-1, keepdim=True) + 1e-6)


class GroundingDinoReward:
    """:class:`~reward_models.base.OutcomeJudge`: T2I-R1's detector reward of each image (range [0, 1]).

    Args:
        model_dir: local transformers GroundingDINO directory (model + processor).
        requirements: prompt -> requirements (default: the offline prompt parser without vocabulary).
        rules: :class:`DetectorRules` (default: quirks fixed; ``DetectorRules.official()`` reproduces T2I-R1).
        box_threshold: minimum phrase confidence of a kept box (official 0.3).
        batch_size: images per forward pass.
        device, dtype: where and in which precision the detector runs (official: float32).
    """

    def __init__(
        self,
        model_dir: str | Path,
        requirements: RequirementsResolver | None = None,
        rules: DetectorRules | None = None,
        box_threshold: float = 0.3,
        batch_size: int = 8,
        device: str = "cpu",
        dtype: str = "float32",
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"GroundingDinoReward.batch_size must be >= 1, got {batch_size}")
        weights_dtype = torch_dtype(dtype, "GroundingDinoReward.dtype")
        path = check_model_directory(model_dir, "GroundingDINO")
        self.processor, self.model = load_local(
            GroundingDinoForObjectDetection, GroundingDinoProcessor, path, dtype=weights_dtype, device=device
        )
        self.device = torch.device(device)
        self.requirements = requirements if requirements is not None else RequirementsResolver()
        self.rules = rules if rules is not None else DetectorRules()
        self.box_threshold = float(box_threshold)
        self.batch_size = batch_size

    @torch.inference_mode()
    def detect(self, images: Sequence[Image.Image], nouns: Sequence[Sequence[str]]) -> list[list[Detection]]:
        """Detections of ``nouns[i]`` in ``images[i]`` (every list non-empty), in batches of ``batch_size``."""
        if len(images) != len(nouns):
            raise ValueError(f"got {len(nouns)} noun lists for {len(images)} images")
        out: list[list[Detection]] = []
        for start in range(0, len(images), self.batch_size):
            out += self._detect_batch(images[start : start + self.batch_size], nouns[start : start + self.batch_size])
        return out

    def _detect_batch(self, images: Sequence[Image.Image], nouns: Sequence[Sequence[str]]) -> list[list[Detection]]:
        captions, spans, labels = zip(*(detection_caption(n, self.rules.full_phrase) for n in nouns))
        inputs = self.processor(images=list(images), text=list(captions), padding=True, return_tensors="pt")
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)
        outputs = self.model(**inputs)
        probs = outputs.logits.float().sigmoid().cpu()  # [b, queries, max_text_len]; padded text positions -> 0
        boxes = outputs.pred_boxes.float().cpu()  # [b, queries, 4] normalised (cx, cy, w, h)
        encoding = self.processor.tokenizer(list(captions), padding=True)
        detections = []
        for row in range(len(images)):
            phrase_probs = positive_map(encoding, row, spans[row], probs.shape[-1]) @ probs[row].T  # [n_phrases, queries]
            found = []
            for label, confidence in zip(labels[row], phrase_probs):
                for query in torch.nonzero(confidence > self.box_threshold).flatten().tolist():
                    found.append(Detection(label, tuple(boxes[row, query].tolist()), float(confidence[query])))
            detections.append(found)
        return detections

    def score(
        self,
        prompts: Sequence[str],
        images: Sequence[Image.Image],
        *,
        requirements: Sequence[Requirements] | None = None,
    ) -> JudgeOutput:
        """Scores ``[B]`` in [0, 1]; components ``num_detections``. ``requirements`` overrides the resolver."""
        validate_judge_inputs(prompts, images)
        needs = self.requirements.resolve(prompts, requirements)
        active = [i for i, r in enumerate(needs) if r.nouns]  # no nouns: reward 1 without running the detector
        found = dict(zip(active, self.detect([images[i] for i in active], [needs[i].nouns for i in active])))
        scores = [detector_score(r, found.get(i, []), self.rules) for i, r in enumerate(needs)]
        n = len(prompts)
        return JudgeOutput(
            scores=torch.tensor(scores, dtype=torch.float32),
            components={"num_detections": torch.tensor([float(len(found.get(i, []))) for i in range(n)])},
            cost=JudgeCost(forward_passes=len(active), images_scored=n),
        )
