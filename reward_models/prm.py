"""Process reward model: the yes/no judge asked the PRM question about each step's predicted image (paper §5).

The paper's PRM (zero-shot or fine-tuned) scores the *predicted clean image* of every decoding step and a
step-level best-of-N keeps the most confident partial path; the branching belongs to ``search/``. Only the
paper describes a PRM (reference §5, §12): there is no released implementation to match.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from PIL import Image

from reward_models.base import Generators, JudgeOutput, YesNoJudge, validate_judge_inputs, validate_step
from reward_models.lmm_judge import question_turns
from reward_models.questions import PRM_QUESTION

__all__ = ["PRM"]


class PRM:
    """``ProcessJudge``: P("yes") to "Does this intermediate image accurately represent the prompt?".

    Args:
        judge: the yes/no judge.
        question_template: ``None`` = the reference PRM question (§5).
    """

    def __init__(self, judge: YesNoJudge, question_template: str | None = None) -> None:
        self.judge = judge
        self.question_template = PRM_QUESTION if question_template is None else question_template

    def score_steps(
        self,
        prompts: Sequence[str],
        step_images: Sequence[Image.Image],
        step: int,
        num_steps: int,
        *,
        generator: Generators = None,
    ) -> JudgeOutput:
        """Scores ``[B]`` = P("yes") for the predicted images of step ``step`` (0-based) of ``num_steps``.

        The step index is validated but does not enter the question: the paper asks the same question at every
        step. Components as in :meth:`reward_models.lmm_judge.LMMYesNoJudge.ask`, plus ``step`` ``[B]``.
        """
        validate_step(step, num_steps)
        validate_judge_inputs(prompts, step_images, images_name="step_images")
        conversations = question_turns(self.question_template, prompts, self.judge.image_token)
        out = self.judge.ask(conversations, step_images, generator=generator)
        out.components["step"] = torch.full((len(prompts),), float(step))
        return out
