"""Test doubles for the search tests: a tiny Show-o and judges that answer from tables (not a test module).

Judges only see images, so each table is keyed by *candidate*: a reference run of the plain pipeline (one generator
per candidate, seeds from :mod:`search.seeds`) decodes every candidate's predicted image at every step, and an image
is mapped back to the candidate that produced it. Step-dependent answers are keyed by how many times the judge was
asked about that candidate (PARM asks clarity at every step from step 0 until clear).
"""
from __future__ import annotations

import hashlib
from collections import Counter

import torch

from reward_models.base import JudgeCost, JudgeOutput
from reward_models.tiny import ScriptedYesNoJudge
from search.base import Slot
from search.seeds import candidate_generators
from showo.factory import build_tiny_showo
from tests.helpers import TINY_VQ

REFLECT_MARK = "Reflect:"  # start of the reflection question used with ParmTable
REFLECTION_QUESTION = REFLECT_MARK + " {image} does this image match the prompt {prompt}? yes or no"
WORDS = ["a", "photo", "of", "red", "blue", "circle", "square", "the", "image", "is", "wrong", "color", "missing"]


def tiny_bundle():
    return build_tiny_showo(WORDS, vq=TINY_VQ, seed=0)


def reference_run(pipe, slot: Slot, num_candidates: int, num_steps: int, guidance_scale: float = 1.75):
    """Plain pipeline run of candidates 0..n-1: (final tokens [n, N], predicted tokens [S, n, N])."""
    seeds = [slot.candidate_seed(i) for i in range(num_candidates)]
    out = pipe([slot.prompt] * num_candidates, guidance_scale=guidance_scale, num_inference_steps=num_steps,
               generator=candidate_generators(seeds), output_type="tokens", return_trajectory=True)
    return out.tokens, torch.stack([r.predicted_tokens for r in out.trajectory])


def reference_run_any(pipe, slot: Slot, num_candidates: int, sampling: dict):
    """:func:`reference_run` for any generator of the protocol: (final tokens [n, N], predicted tokens [S, n, N],
    the plain run's output) of candidates 0..n-1 drawn with their search seeds."""
    seeds = [slot.candidate_seed(i) for i in range(num_candidates)]
    out = pipe([slot.prompt] * num_candidates, generator=candidate_generators(seeds), output_type="tokens",
               return_trajectory=True, **sampling)
    return out.tokens, torch.stack([r.predicted_tokens for r in out.trajectory]), out


def image_key(image) -> bytes:
    return image.tobytes()


def image_hash_score(image) -> float:
    """A deterministic pseudo-random score in [0, 1) of an image's pixels (any image, branched paths included)."""
    return int.from_bytes(hashlib.sha256(image.tobytes()).digest()[:4], "little") / 2**32


class CandidateIndex:
    """Maps any predicted or final image of the reference run back to its candidate."""

    def __init__(self, pipe, predicted: torch.Tensor) -> None:
        self.by_image: dict[bytes, int] = {}
        steps, n, _ = predicted.shape
        for s in range(steps):
            for i, image in enumerate(pipe.decode(t[None], "pil")[0] for t in predicted[s]):
                owner = self.by_image.setdefault(image_key(image), i)
                assert owner == i, "two candidates share an image: pick other seeds"

    def __call__(self, image) -> int:
        return self.by_image[image_key(image)]


class ParmTable:
    """Scripted PARM weights: candidate i is clear from step ``clear_at[i]`` (None: never), has ``potential[i]``
    with P("no") ``p_no[i]``, and scores ``score[i]`` on the selection (ORM) question."""

    def __init__(self, index: CandidateIndex, clear_at, potential, p_no, score, reflect_yes_at=None,
                 reflect_p_yes=None) -> None:
        self.index, self.clear_at, self.potential, self.p_no, self.score = index, clear_at, potential, p_no, score
        self.reflect_yes_at = reflect_yes_at  # reflection round (1-based) that says yes; None = never
        self.reflect_p_yes = reflect_p_yes  # P("yes") of the k-th "no" reflection (default 0.3 each)
        self.clarity_calls: Counter = Counter()
        self.asked: list[tuple[str, int]] = []  # (question kind, candidate or -1 for unknown images)
        self.reflections = 0

    def answer(self, conversation, image):
        text = conversation[0]["content"]
        if len(conversation) == 3:
            i = self.index(image)
            self.asked.append(("potential", i))
            return (1 - self.p_no[i], self.p_no[i], "yes" if self.potential[i] else "no")
        if "certain step" in text:
            i = self.index(image)
            step = self.clarity_calls[i]
            self.clarity_calls[i] += 1
            self.asked.append(("clarity", i))
            clear = self.clear_at[i] is not None and step >= self.clear_at[i]
            return (0.9, 0.1, "yes") if clear else (0.2, 0.8, "no")
        if text.startswith(REFLECT_MARK):
            self.reflections += 1
            self.asked.append(("reflect", self.index.by_image.get(image_key(image), -1)))
            yes = self.reflect_yes_at is not None and self.reflections >= self.reflect_yes_at
            p = 0.3 if self.reflect_p_yes is None else self.reflect_p_yes[self.reflections - 1]
            return (0.8, 0.2, "yes") if yes else (p, 1 - p, "no")
        i = self.index(image)
        self.asked.append(("select", i))
        return (self.score[i], 1 - self.score[i], "yes")

    def judge(self) -> ScriptedYesNoJudge:
        return ScriptedYesNoJudge(self.answer, explain_fn=lambda conv, image: "the color is wrong")


def hash_parm_answer(conversation, image):
    """A stateless scripted PARM / ORM over any slot's images (``ScriptedYesNoJudge(hash_parm_answer)``): clear when
    the image's hash score is above 0.3, potential when above 0.6 (P("no") = 1 - score), any other question answered
    with the score."""
    score = image_hash_score(image)
    if len(conversation) == 3:
        return (score, 1 - score, "yes" if score > 0.6 else "no")
    if "certain step" in conversation[0]["content"]:
        return (0.9, 0.1, "yes") if score > 0.3 else (0.2, 0.8, "no")
    return (score, 1 - score, "yes")


class HashProcessJudge:
    """ProcessJudge double: score = image_hash_score; records (step, number of images) per call."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []

    def score_steps(self, prompts, step_images, step, num_steps):
        assert len(prompts) == len(step_images) and 0 <= step < num_steps
        self.calls.append((step, len(step_images)))
        scores = torch.tensor([image_hash_score(im) for im in step_images], dtype=torch.float32)
        return JudgeOutput(scores=scores, cost=JudgeCost(forward_passes=len(prompts), images_scored=len(prompts)))


# ---- recording judges (tests of "the PNG written is the image the judge scored"), built by Hydra in-process
RECORDED: list = []  # every image a recording judge looked at, in order


class RecordingOutcomeJudge:
    """OutcomeJudge double: score = image_hash_score; keeps every image it scored in ``RECORDED``."""

    def score(self, prompts, images):
        RECORDED.extend(images)
        scores = torch.tensor([image_hash_score(im) for im in images], dtype=torch.float32)
        return JudgeOutput(scores=scores, cost=JudgeCost(forward_passes=len(images), images_scored=len(images)))


def recording_parm():
    """A PARM whose judge is clear and hopeful about every path and keeps the images of its selection question
    (the final images it ranks) in ``RECORDED``."""
    from reward_models.parm import Parm

    def answer(conversation, image):
        text = conversation[0]["content"]
        if len(conversation) == 3 or "certain step" in text:
            return (0.9, 0.1, "yes")
        RECORDED.append(image)
        score = image_hash_score(image)
        return (score, 1 - score, "yes")

    return Parm(judge=ScriptedYesNoJudge(answer))
