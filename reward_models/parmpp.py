"""PARM++: PARM plus a reflection judgment with an explanation of the mismatch (paper §7, reference §7).

After PARM's best-of-N' selection, the reflection evaluation asks whether the chosen image matches the prompt.
"yes" → keep it; otherwise the judge writes a description of the text-image misalignment, which the
self-correction loop (``search/reflect.py``, at most ``max_reflections`` rounds) hands to a self-correction
fine-tuned Show-o together with the prompt and the rejected image.

PARM++ was never released (reference §12): the reflection question defaults to the ORM question (the paper calls
it a "reflection evaluation" of prompt-image match) and the explanation question is our own wording
(:data:`reward_models.questions.REFLECTION_EXPLAIN`). Both are configurable.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image

from reward_models.base import Generators, JudgeCost, JudgeOutput, validate_judge_inputs
from reward_models.lmm_judge import question_turns, user_turn
from reward_models.parm import Parm, ParmDecision, ParmResult, ParmSelection, ParmState
from reward_models.questions import ORM_QUESTION, REFLECTION_EXPLAIN

__all__ = ["ParmPlusPlus", "Reflection"]


@dataclass
class Reflection:
    """Reflection verdicts for a batch of B (prompt, chosen image) pairs.

    Attributes:
        accept: B booleans, True when the judge says the image matches the prompt.
        explanations: B strings for rejected images (the misalignment description), ``None`` for accepted ones
            unless ``explain_accepted`` is set.
        output: the yes/no judgment (``scores`` = P("yes") ``[B]``, components as in ``LMMYesNoJudge.ask``;
            ``texts`` = the explanations, ``""`` where none was generated).
        cost: judgment plus explanation cost.
    """

    accept: list[bool]
    explanations: list[str | None]
    output: JudgeOutput
    cost: JudgeCost


class ParmPlusPlus:
    """PARM with reflection; the PARM steps are delegated to ``parm`` and the reflection uses ``parm.judge``.

    Args:
        parm: the PARM procedure (its judge should hold PARM++ weights).
        reflection_question: yes/no question on the chosen image (``None`` = the ORM question).
        explain_question: text-only follow-up asked after an assistant "no" (``None`` = ``REFLECTION_EXPLAIN``).
        max_new_tokens: explanation length limit.
        explain_accepted: also explain accepted images (off: the paper explains mismatches only).
        max_reflections: rounds of the self-correction loop (paper: 3); read by the search loop.
    """

    def __init__(
        self,
        parm: Parm,
        reflection_question: str | None = None,
        explain_question: str | None = None,
        max_new_tokens: int = 128,
        explain_accepted: bool = False,
        max_reflections: int = 3,
    ) -> None:
        if max_reflections < 0:
            raise ValueError(f"ParmPlusPlus.max_reflections must be >= 0, got {max_reflections}")
        self.parm = parm
        self.judge = parm.judge
        self.reflection_question = ORM_QUESTION if reflection_question is None else reflection_question
        self.explain_question = REFLECTION_EXPLAIN if explain_question is None else explain_question
        self.max_new_tokens = max_new_tokens
        self.explain_accepted = explain_accepted
        self.max_reflections = max_reflections

    # PARM steps, so a search loop can drive PARM++ exactly like PARM.
    def new_state(self, num_paths: int) -> ParmState:
        return self.parm.new_state(num_paths)

    def judges_step(self, step: int, num_steps: int) -> bool:
        return self.parm.judges_step(step, num_steps)

    def observe_step(
        self,
        state: ParmState,
        prompts: Sequence[str],
        step_images: Sequence[Image.Image | None],
        step: int,
        num_steps: int,
    ) -> ParmDecision:
        return self.parm.observe_step(state, prompts, step_images, step, num_steps)

    def select(
        self, state: ParmState, prompts: Sequence[str], final_images: Sequence[Image.Image | None]
    ) -> ParmSelection:
        return self.parm.select(state, prompts, final_images)

    def run_on_pool(
        self, prompts: Sequence[str], step_images: Sequence[Sequence[Image.Image]], final_images: Sequence[Image.Image]
    ) -> ParmResult:
        return self.parm.run_on_pool(prompts, step_images, final_images)

    def judge_match(
        self, prompts: Sequence[str], images: Sequence[Image.Image], *, generator: Generators = None
    ) -> JudgeOutput:
        """The reflection judgment alone, no explanation: ``scores`` = P("yes") of each (prompt, image)."""
        return self._judge_match(prompts, images, generator)[1]

    def _judge_match(self, prompts: Sequence[str], images: Sequence[Image.Image],
                     generator: Generators) -> tuple[list, JudgeOutput]:
        """The reflection conversations and the judge's answer to them."""
        validate_judge_inputs(prompts, images)
        conversations = question_turns(self.reflection_question, prompts, self.judge.image_token)
        return conversations, self.judge.ask(conversations, images, generator=generator)

    def reflect(
        self, prompts: Sequence[str], images: Sequence[Image.Image], *, generator: Generators = None
    ) -> Reflection:
        """Judge each chosen image; explain the mismatch of every rejected one (one generation per rejection)."""
        conversations, out = self._judge_match(prompts, images, generator)
        accept = [bool(a == 1) for a in out.components["answer_yes"]]
        to_explain = [i for i, ok in enumerate(accept) if self.explain_accepted or not ok]
        explanations: list[str | None] = [None] * len(prompts)
        cost = out.cost
        if to_explain:
            follow_ups = [
                [
                    *conversations[i],
                    {"role": "assistant", "content": "yes" if accept[i] else "no"},
                    user_turn(self.explain_question, prompts[i], None),
                ]
                for i in to_explain
            ]
            text = self.judge.generate_text(
                follow_ups, [images[i] for i in to_explain], max_new_tokens=self.max_new_tokens
            )
            cost = cost + text.cost
            for i, explanation in zip(to_explain, text.texts):
                explanations[i] = explanation
        output = JudgeOutput(
            scores=out.scores,
            components=dict(out.components),
            texts=["" if e is None else e for e in explanations],
            cost=cost,
        )
        return Reflection(accept=accept, explanations=explanations, output=output, cost=cost)
