"""PARM++: PARM search, then reflection and self-correction, at most ``max_reflections`` rounds (paper §7).

Round ``r`` (1-based): the reflection judgment looks at the current image. "yes" ends the search with it; otherwise
the judge's explanation of the mismatch, the prompt and the current image's tokens are laid out in the
self-correction format (:mod:`showo.self_correction`) and a self-correction fine-tuned Show-o generates a new image
(seeded from ``(seed, prompt, sample, round)``), which becomes the current image. After ``max_reflections``
corrections the last image is kept without another judgment (a further "no" could not change anything). So the
judge reflects at most ``max_reflections`` times and Show-o regenerates at most ``max_reflections`` times.
"""
from __future__ import annotations

from typing import Optional

from reward_models.parmpp import ParmPlusPlus
from search.base import Candidate, PathGroup, Sampling, SearchResult, Slot, TraceEvent, decode_images
from search.parm import ParmSearch
from search.seeds import reflection_seed
from showo.self_correction import SelfCorrectionFormat
from showo.pipeline import ShowoPipeline


class ParmPlusPlusSearch:
    """``search`` = :class:`~search.parm.ParmSearch` with ``parmpp``'s PARM, then the reflection loop.

    Args:
        parmpp: PARM++ (its ``max_reflections`` is the default number of rounds; paper: 3).
        num_candidates: N of the PARM stage.
        batch_size: rows per forward pass.
        max_feedback_length: token budget of the explanation in the self-correction sequence.
        max_reflections: overrides ``parmpp.max_reflections`` when given.
        corrector: a t2i pipeline of the self-correction fine-tuned model (``None``: the searched pipeline's model,
            the paper's Table 5 setting where one fine-tuned Show-o does both).
    """

    name = "parmpp"

    def __init__(self, parmpp: ParmPlusPlus, num_candidates: int = 20, batch_size: int = 20,
                 max_feedback_length: int = 64, max_reflections: Optional[int] = None,
                 corrector: Optional[ShowoPipeline] = None) -> None:
        self.parmpp = parmpp
        self.parm_search = ParmSearch(parmpp, num_candidates, batch_size)
        self.max_feedback_length = max_feedback_length
        self.max_reflections = parmpp.max_reflections if max_reflections is None else max_reflections
        if self.max_reflections < 0:
            raise ValueError(f"max_reflections must be >= 0, got {self.max_reflections}")
        self.corrector = corrector

    def search(self, pipe: ShowoPipeline, slot: Slot, sampling: Sampling) -> SearchResult:
        result = self.parm_search.search(pipe, slot, sampling)
        result.strategy = self.name
        if self.max_reflections == 0:
            return result
        if pipe.prompting is None:
            raise ValueError("PARM++ self-correction needs a pipeline with a tokenizer (to encode the feedback)")
        fmt = SelfCorrectionFormat(pipe.layout, self.max_feedback_length)
        corrector = fmt.pipeline(self.corrector or pipe)
        current = result.candidates[result.chosen]
        for round_index in range(1, self.max_reflections + 1):
            verdict = self.parmpp.reflect([slot.prompt], [result.image])
            calls = 1 + int(verdict.explanations[0] is not None)
            result.cost.add_judge(verdict.cost, calls=calls)
            current.info["reflection"] = {"round": round_index, "accept": verdict.accept[0],
                                          "p_yes": float(verdict.output.scores[0]), "explanation": verdict.explanations[0]}
            result.trace.append(TraceEvent("reflect", None, [current.index], dict(current.info["reflection"])))
            if verdict.accept[0]:
                break
            current = self._correct(corrector, fmt, pipe, slot, sampling, result, current, verdict.explanations[0] or "",
                                    round_index)
        result.chosen = current.index
        return result

    def _correct(self, corrector: ShowoPipeline, fmt: SelfCorrectionFormat, pipe: ShowoPipeline, slot: Slot,
                 sampling: Sampling, result: SearchResult, previous: Candidate, feedback: str,
                 round_index: int) -> Candidate:
        """Generate the next image from (prompt, feedback, previous tokens); it becomes ``result.image``."""
        prompt_ids, feedback_ids = pipe.prompting.tokenize([slot.prompt, feedback])
        input_ids = fmt.build([prompt_ids], [feedback_ids], previous.tokens[None])
        seed = reflection_seed(slot.seed, slot.prompt_index, slot.sample_index, round_index)
        new = Candidate(index=len(result.candidates), seed=seed, parent=previous.index, round=round_index,
                        info={"feedback": feedback})
        group = PathGroup(corrector, slot.prompt, [new.index], [seed], sampling, batch_size=1, input_ids=input_ids)
        while not group.done:
            group.step()
        new.tokens = group.final_tokens()[new.index].cpu()
        result.cost.generator_forward_passes += group.forward_passes
        result.candidates.append(new)
        result.image = decode_images(pipe, new.tokens[None], result.cost)[0]
        result.trace.append(TraceEvent("correct", None, [new.index], {"round": round_index, "from": previous.index,
                                                                       "forward_passes": group.forward_passes}))
        return new
