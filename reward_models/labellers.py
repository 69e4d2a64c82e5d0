"""Labellers for judge data at real scale: an image judged by a judge's own answers (imagegen_cot.md §5, §7).

The judge-data builders (:mod:`reward_models.rollouts`, :mod:`reward_models.judge_data`) label images with a
``labeller(line, image) -> verdict`` (``verdict.correct``, ``verdict.reason``). The shapes world has an exact one; at
real scale there is no ground truth, so the paper's PRM roll-out labels ("yes" iff any completion is judged "yes")
and PARM++'s reflection data come from a judge: :class:`OutcomeLabeller` reads an outcome judge's yes/no (e.g. the
fine-tuned ORM, for roll-out labels), :class:`ReflectionLabeller` asks a PARM++ judge the reflection question and, for
a "no", its explanation of the mismatch (the self-correction feedback).
"""
from __future__ import annotations

from dataclasses import dataclass

from PIL import Image

from reward_models.parmpp import ParmPlusPlus

__all__ = ["JudgeVerdict", "OutcomeLabeller", "ReflectionLabeller"]


@dataclass(frozen=True)
class JudgeVerdict:
    """``correct``: the judge said "yes"; ``reason``: its explanation of a "no" (empty for a "yes")."""

    correct: bool
    reason: str = ""


class OutcomeLabeller:
    """``(line, image) -> JudgeVerdict``: an :class:`~reward_models.base.OutcomeJudge`'s yes/no on ``line["prompt"]``
    (its ``answer_yes`` component; ``score >= threshold`` for a judge that decides nothing)."""

    def __init__(self, judge, threshold: float = 0.5) -> None:
        self.judge = judge
        self.threshold = threshold

    def __call__(self, line: dict, image: Image.Image) -> JudgeVerdict:
        out = self.judge.score([line["prompt"]], [image])
        yes = out.components.get("answer_yes")
        return JudgeVerdict(bool(yes[0]) if yes is not None else float(out.scores[0]) >= self.threshold)


class ReflectionLabeller:
    """``(line, image) -> JudgeVerdict`` from ``parmpp.reflect`` on ``line["prompt"]``.

    A "no" whose generated explanation is empty gets ``fallback_reason`` (a self-correction group needs feedback, and
    an empty one would teach the corrector to ignore it); ``fallbacks`` counts how often that happened.
    """

    def __init__(self, parmpp: ParmPlusPlus, fallback_reason: str = "The image does not match the prompt.") -> None:
        if not fallback_reason.strip():
            raise ValueError("ReflectionLabeller.fallback_reason must not be empty")
        self.parmpp = parmpp
        self.fallback_reason = fallback_reason
        self.fallbacks = 0

    def __call__(self, line: dict, image: Image.Image) -> JudgeVerdict:
        reflection = self.parmpp.reflect([line["prompt"]], [image])
        if reflection.accept[0]:
            return JudgeVerdict(True)
        reason = (reflection.explanations[0] or "").strip()
        if not reason:
            self.fallbacks += 1
            reason = self.fallback_reason
        return JudgeVerdict(False, reason)
