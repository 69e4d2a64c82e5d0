"""Outcome reward model: a yes/no judge asked the ORM question about finished images (paper §4, reference §4).

Zero-shot and fine-tuned ORM are the same class with a different checkpoint (``configs/reward/orm_zeroshot.yaml``
vs ``orm_finetuned.yaml``). Best-of-N keeps the candidate with the highest P("yes") (§4.1): that ranking is the
search's job, this module only scores.
"""
from __future__ import annotations

from collections.abc import Sequence

from PIL import Image

from reward_models.base import Generators, JudgeOutput, YesNoJudge, validate_judge_inputs
from reward_models.lmm_judge import question_turns
from reward_models.questions import ORM_QUESTION

__all__ = ["ORM"]


class ORM:
    """``OutcomeJudge``: P("yes") to "Does this image accurately represent the prompt?".

    Args:
        judge: the yes/no judge (an :class:`~reward_models.lmm_judge.LMMYesNoJudge` or a test double).
        question_template: ``{image}``/``{prompt}`` template; ``None`` = the reference ORM question (§4.1).
    """

    def __init__(self, judge: YesNoJudge, question_template: str | None = None) -> None:
        self.judge = judge
        self.question_template = ORM_QUESTION if question_template is None else question_template

    def score(
        self, prompts: Sequence[str], images: Sequence[Image.Image], *, generator: Generators = None
    ) -> JudgeOutput:
        """Scores ``[B]`` = P("yes"); components ``p_yes``, ``p_no``, ``p_yes_norm``, ``answer_yes``, ``answer_no``."""
        validate_judge_inputs(prompts, images)
        conversations = question_turns(self.question_template, prompts, self.judge.image_token)
        return self.judge.ask(conversations, images, generator=generator)
