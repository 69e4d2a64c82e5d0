"""Per-category T2I-CompBench scoring: the official rules (:mod:`eval.t2i_compbench.rules`) around the models.

One :class:`CompBenchScorer` holds the parser and whichever models the evaluated categories need (BLIP-VQA for
attributes and complex, the detector for spatial / numeracy / complex, CLIP for non-spatial / complex). Every image
is scored independently of its batch-mates, so results do not depend on the batch size or the process count.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from PIL import Image

from eval.t2i_compbench import rules
from eval.t2i_compbench.parsing import NounPhraseParser
from eval.t2i_compbench.prompts import CATEGORIES, ComplexSplit

__all__ = ["CompBenchScorer", "required_parts"]

_NEEDS = {"blip_vqa": ("vqa",), "spatial": ("detector",), "numeracy": ("detector",), "clip": ("clip",),
          "3_in_1": ("vqa", "detector", "clip", "complex_split")}


def required_parts(categories: Sequence[str]) -> set[str]:
    """The scorer parts (``vqa``, ``detector``, ``clip``, ``complex_split``) the categories need."""
    return {part for c in categories for part in _NEEDS[CATEGORIES[c].scorer]}

Result = dict[str, Any]  # {"score": float, "details": {...}}


class CompBenchScorer:
    """Scores ``(prompt, image)`` pairs of one category with its official rule.

    Args:
        parser: noun phrases and POS tags (:class:`~eval.t2i_compbench.parsing.RuleParser` by default).
        vqa: :class:`~eval.t2i_compbench.blip_vqa.BlipVqa` (color, shape, texture, complex).
        detector: an :class:`~eval.t2i_compbench.detector.ObjectDetector` (spatial, numeracy, complex).
        clip: a :class:`reward_models.clip_score.ClipScore` (its raw ``cosine``; non_spatial, complex).
        complex_split: the complex prompt split (complex).
        numeracy_objects: ``new_objects.txt`` as {singular or plural: singular}; None: inferred from the prompts.
        max_phrases: noun phrases asked per image (``--np_num`` 8).
    """

    def __init__(self, parser: NounPhraseParser, vqa=None, detector=None, clip=None,
                 complex_split: ComplexSplit | None = None, numeracy_objects: Mapping[str, str] | None = None,
                 max_phrases: int = rules.MAX_PHRASES):
        self.parser = parser
        self.vqa, self.detector, self.clip = vqa, detector, clip
        self.complex_split = complex_split
        self.numeracy_objects = dict(numeracy_objects) if numeracy_objects is not None else None
        self.max_phrases = max_phrases

    def check(self, category: str) -> None:
        """Fail before any work when ``category`` needs a part this scorer lacks (names the config key)."""
        missing = sorted(n for n in required_parts([category]) if getattr(self, n) is None)
        if missing:
            raise ValueError(f"category {category!r} needs compbench.{' and compbench.'.join(missing)} (not configured)")

    def prepare(self, category: str, prompts: Sequence[str]) -> None:
        """Per-category setup from the whole prompt file (numeracy: infer the object vocabulary if not given)."""
        self.check(category)
        if category == "numeracy" and self.numeracy_objects is None:
            self.numeracy_objects = rules.infer_objects([self._words(p) for p in prompts])

    def score(self, category: str, prompts: Sequence[str], images: Sequence[Image.Image]) -> list[Result]:
        kind = CATEGORIES[category].scorer
        if kind == "blip_vqa":
            return self.attribute(prompts, images)
        if kind == "spatial":
            return self.spatial(prompts, images)
        if kind == "numeracy":
            return self.numeracy(prompts, images)
        if kind == "clip":
            return self.non_spatial(prompts, images)
        return self.complex(prompts, images)

    # --------------------------------------------------------------------------------------------- scorers
    def attribute(self, prompts: Sequence[str], images: Sequence[Image.Image]) -> list[Result]:
        """BLIP-VQA: product over the prompt's noun phrases of p(yes | image, "<phrase>?") (reference §2)."""
        questions = [rules.attribute_questions(self.parser, p, self.max_phrases) for p in prompts]
        flat_images = [im for im, qs in zip(images, questions) for _ in qs]
        probs = self.vqa.yes_probability(flat_images, [q for qs in questions for q in qs]).tolist()
        out, i = [], 0
        for qs in questions:
            answers = [float(f"{p:.4f}") for p in probs[i:i + len(qs)]]
            i += len(qs)
            out.append({"score": rules.blip_image_score(answers), "details": {"questions": qs, "answers": answers}})
        return out

    def _detect(self, images: Sequence[Image.Image], queries: list[list[str]]) -> list[list[rules.Detection]]:
        """Detections with boxes scaled into the official 479-px detector frame."""
        out = []
        for image, dets in zip(images, self.detector.detect(images, queries)):
            s = rules.official_frame_scale(*image.size)
            out.append([rules.Detection(d.label, d.score, tuple(v * s for v in d.box)) for d in dets])
        return out

    def spatial(self, prompts: Sequence[str], images: Sequence[Image.Image], complex_prompts: bool = False) -> list[Result]:
        """2D spatial (reference §3.1); ``complex_prompts``: the ``--complex True`` object rule."""
        find = rules.complex_objects if complex_prompts else rules.simple_objects
        objects = [find(self.parser, p) for p in prompts]
        named = [[("person" if o in rules.PERSON_WORDS else o) for o in pair if o is not None] for pair in objects]
        detections = self._detect(images, named)
        out = []
        for prompt, (obj1, obj2), dets in zip(prompts, objects, detections):
            score, details = rules.spatial_image_score(rules.spatial_relation(prompt), obj1, obj2, dets)
            details["detections"] = [[d.label, round(d.score, 4), [round(v, 2) for v in d.box]] for d in dets]
            out.append({"score": score, "details": details})
        return out

    def non_spatial(self, prompts: Sequence[str], images: Sequence[Image.Image], complex_prompts: bool = False) -> list[Result]:
        """Raw CLIP cosine of image and prompt (reference §4); complex: adjectives removed from the text."""
        texts = [rules.remove_adjectives(self.parser, p) for p in prompts] if complex_prompts else list(prompts)
        cos = self.clip.cosine(texts, images).tolist()
        return [{"score": float(c), "details": {"text": t}} for c, t in zip(cos, texts)]

    def numeracy(self, prompts: Sequence[str], images: Sequence[Image.Image]) -> list[Result]:
        """Counts against the prompt's numbers (reference §3.3)."""
        if self.numeracy_objects is None:
            raise RuntimeError("numeracy needs an object vocabulary: call prepare('numeracy', prompts) first")
        targets = [rules.count_targets(self._words(p), self.numeracy_objects) for p in prompts]
        queries = [[rules.NUMERACY_ALIASES.get(n, n) for n, _ in t] for t in targets]
        out = []
        for t, dets in zip(targets, self._detect(images, queries)):
            score, details = rules.numeracy_score(t, dets)
            out.append({"score": score, "details": details})
        return out

    def complex(self, prompts: Sequence[str], images: Sequence[Image.Image]) -> list[Result]:
        """3-in-1 (reference §5): BLIP-VQA, complex spatial and complex CLIP, combined by the prompt's kind."""
        attr = self.attribute(prompts, images)
        spatial = self.spatial(prompts, images, complex_prompts=True)
        clip = self.non_spatial(prompts, images, complex_prompts=True)
        out = []
        for prompt, a, s, c in zip(prompts, attr, spatial, clip):
            kind = self.complex_split.kind(prompt)
            parts = {"attribute": a["score"], "spatial": s["score"], "clip": c["score"]}
            out.append({"score": rules.complex_score(kind, *parts.values()),
                        "details": {"kind": kind, **parts, "attribute_details": a["details"],
                                    "spatial_details": s["details"], "clip_text": c["details"]["text"]}})
        return out

    def _words(self, prompt: str) -> list[str]:
        return [t.text for t in self.parser.tokens(prompt)]
