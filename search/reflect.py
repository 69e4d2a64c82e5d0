"""PARM++: PARM search, then reflection and self-correction, at most ``max_reflections`` rounds (paper §7).

Round ``r`` (1-based): the reflection judgment looks at the current image. "yes" ends the search with it; otherwise
a new image is generated from the judge's explanation (seeded from ``(seed, prompt, sample, round)``) and becomes the
current image. The paper stops at the first "yes" or after ``max_reflections`` rounds and does not say which image a
loop that never hears "yes" ends with; ``if_never_accepted`` chooses:

* ``"last"`` (default): the last correction, without another judgment. The judge reflects at most ``max_reflections``
  times and the generator regenerates at most ``max_reflections`` times.
* ``"best"``: the last correction is judged too (the reflection question alone, no explanation: one more judge call)
  and the loop ends with the image of highest P("yes") among PARM's pick and its corrections (ties to the earlier
  one): a correction that is worse than what it corrected is not kept. The project's choice, not the paper's; the
  shapes world's PARM++ row uses it (docs/shapes_world.md).

How the explanation reaches the generator depends on the generator:

* **Show-o** (the paper's setting): the explanation, the prompt and the current image's tokens are laid out in the
  self-correction format (:mod:`showo.self_correction`) and a self-correction fine-tuned Show-o generates the new
  image ("prompt + feedback + previous image -> new image").
* **Janus-Pro** (no self-correction model exists for it): the new image is *regenerated from the prompt and the
  explanation*, the explanation taking the place of the semantic CoT in T2I-R1's image prompt
  ``"{prompt}. {explanation}"`` (``prepare(..., cots=[explanation])``: no plan is sampled); the previous image is
  not shown to the generator. This is the project's choice, not the paper's.
"""
from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Optional, Sequence

import torch

from common.generator import ImageGenerator
from reward_models.parmpp import ParmPlusPlus
from search.base import (Candidate, CostCounter, PathGroup, Sampling, SearchResult, Slot, TraceEvent, decode_images,
                         record_cots)
from search.parm import ParmSearch
from search.pool import ParmPolicy, entry_path, load_entry
from search.seeds import candidate_generators, reflection_seed
from showo.pipeline import ShowoPipeline
from showo.self_correction import SelfCorrectionFormat


IF_NEVER_ACCEPTED = ("last", "best")


class ParmPlusPlusSearch:
    """``search`` = :class:`~search.parm.ParmSearch` with ``parmpp``'s PARM, then the reflection loop.

    Args:
        parmpp: PARM++ (its ``max_reflections`` is the default number of rounds; paper: 3).
        num_candidates: N of the PARM stage.
        batch_size: rows per forward pass.
        max_feedback_length: token budget of the explanation in the self-correction sequence.
        max_reflections: overrides ``parmpp.max_reflections`` when given.
        if_never_accepted: ``"last"`` (the last correction) or ``"best"`` (the highest P("yes") of the loop's images)
            when no reflection says "yes" (module docstring).
        corrector: Show-o: a t2i pipeline of the self-correction fine-tuned model (``None``: the searched pipeline's
            model, the paper's Table 5 setting where one fine-tuned Show-o does both); Janus-Pro: the generator that
            regenerates (``None``: the searched one).
        pool: a candidate pool directory (:mod:`search.pool`) of the searched generator, the same prompts and seeds,
            with the PARM stage's records: the PARM stage is replayed from it (:class:`search.pool.ParmPolicy`: the
            live stage's pick, image and generator / judge forward passes) instead of generated again. A pool without
            the PARM's records or with fewer than ``num_candidates`` candidates is refused here; a slot whose entry
            has another prompt, other seeds or another number of steps is an error naming the file.
        pool_parm: whose records in the pool: ``None`` the pool's PARM, a name one of ``entry.named_parm`` (the pool
            built with ``parms={name: <this PARM++'s PARM>}``).
    """

    name = "parmpp"

    def __init__(self, parmpp: ParmPlusPlus, num_candidates: int = 20, batch_size: int = 20,
                 max_feedback_length: int = 64, max_reflections: Optional[int] = None,
                 corrector: Optional[ImageGenerator] = None, if_never_accepted: str = "last",
                 pool: Optional[str | os.PathLike] = None, pool_parm: Optional[str] = None) -> None:
        if if_never_accepted not in IF_NEVER_ACCEPTED:
            raise ValueError(f"if_never_accepted must be one of {IF_NEVER_ACCEPTED}, got {if_never_accepted!r}")
        self.if_never_accepted = if_never_accepted
        self.parmpp = parmpp
        self.parm_search = ParmSearch(parmpp, num_candidates, batch_size)
        self.max_feedback_length = max_feedback_length
        self.max_reflections = parmpp.max_reflections if max_reflections is None else max_reflections
        if self.max_reflections < 0:
            raise ValueError(f"max_reflections must be >= 0, got {self.max_reflections}")
        self.corrector = corrector
        self.pool = None if pool is None else Path(pool)
        self.pool_policy = ParmPolicy(num_candidates, pool_parm)
        if self.pool is not None:  # what a pool of any slot must hold, checked before anything runs
            first = next(iter(sorted(self.pool.glob("*_*.json"))), None) if self.pool.is_dir() else None
            if first is None:
                raise FileNotFoundError(f"PARM++: no pool entries (<prompt:05d>_<sample:02d>.json) in {self.pool}")
            entry = load_entry(first)
            self.pool_policy.records(entry)  # raises, naming the slot, when the pool lacks this PARM's records
            if entry.size < num_candidates:
                raise ValueError(f"PARM++: {first} holds {entry.size} candidates, the search asks for {num_candidates}")

    @property
    def slots_per_call(self) -> int:
        """How many slots :meth:`search_many` searches together (their PARM part: :class:`ParmSearch`'s)."""
        return self.parm_search.slots_per_call

    def search(self, pipe: ImageGenerator, slot: Slot, sampling: Sampling) -> SearchResult:
        return self.search_many(pipe, [slot], sampling)[0]

    def search_many(self, pipe: ImageGenerator, slots: Sequence[Slot], sampling: Sampling) -> list[SearchResult]:
        """PARM over ``slots`` together (:meth:`ParmSearch.search_many`), then each slot's reflection loop alone:
        every slot's record is the one searching it alone writes. With ``pool``, PARM's picks are replayed from it."""
        picks = (self.parm_search.search_many(pipe, slots, sampling) if self.pool is None
                 else [self._pool_pick(pipe, slot, sampling) for slot in slots])
        return [self._reflect(pipe, slot, sampling, result) for slot, result in zip(slots, picks)]

    def _pool_pick(self, pipe: ImageGenerator, slot: Slot, sampling: Sampling) -> SearchResult:
        """The PARM stage of ``slot`` replayed from the pool: the pick, image and forward passes of the live stage
        (candidates a live stage would have stopped have no tokens, as there)."""
        path = entry_path(self.pool, slot.prompt_index, slot.sample_index)
        entry = load_entry(path)
        n, num_steps = self.parm_search.num_candidates, pipe.num_steps(sampling)
        seeds = [slot.candidate_seed(i) for i in range(n)]
        if entry.slot.prompt != slot.prompt or entry.seeds[:n] != seeds or entry.num_steps != num_steps:
            raise ValueError(f"{path} is not this search's pool: prompt {entry.slot.prompt!r}, seeds "
                             f"{entry.seeds[:n]}, {entry.num_steps} steps; the search has {slot.prompt!r}, {seeds}, "
                             f"{num_steps} steps")
        pick = self.pool_policy.select(entry)
        candidates = []
        for i, record in enumerate(self.pool_policy.records(entry)[:n]):
            whole = record.pruned_step is None or i == pick.index
            candidates.append(Candidate(index=i, seed=seeds[i], tokens=entry.tokens[i] if whole else None,
                                        score=record.score, stopped_step=None if whole else record.pruned_step))
        record_cots(candidates, dict(enumerate(entry.extras.get("cots") or [])))
        cost = CostCounter(generator_forward_passes=pick.forward_passes, judge_forward_passes=pick.judge_passes or 0)
        image = decode_images(pipe, entry.tokens[pick.index][None], cost)[0]
        trace = [TraceEvent("select", None, [pick.index], {"policy": self.pool_policy.name, "pool": str(path)})]
        return SearchResult(slot=slot, strategy=ParmSearch.name, chosen=pick.index, candidates=candidates,
                            trace=trace, cost=cost, num_steps=num_steps, image=image)

    def _reflect(self, pipe: ImageGenerator, slot: Slot, sampling: Sampling, result: SearchResult) -> SearchResult:
        result.strategy = self.name
        if self.max_reflections == 0:
            return result
        showo = isinstance(pipe, ShowoPipeline)
        if showo and pipe.prompting is None:
            raise ValueError("PARM++ self-correction needs a pipeline with a tokenizer (to encode the feedback)")
        if not showo and "cots" not in inspect.signature(pipe.prepare).parameters:
            raise TypeError(f"PARM++ regenerates a non-Show-o image from prompt + explanation through "
                            f"prepare(..., cots=[...]); {type(pipe).__name__}.prepare takes no cots")
        fmt = SelfCorrectionFormat(pipe.layout, self.max_feedback_length) if showo else None
        corrector = fmt.pipeline(self.corrector or pipe) if showo else (self.corrector or pipe)
        current = result.candidates[result.chosen]
        p_yes, images = {}, {current.index: result.image}  # the loop's judged images: P("yes"), and every image
        accepted = False
        for round_index in range(1, self.max_reflections + 1):
            verdict = self.parmpp.reflect([slot.prompt], [result.image])
            calls = 1 + int(verdict.explanations[0] is not None)
            result.cost.add_judge(verdict.cost, calls=calls)
            current.info["reflection"] = {"round": round_index, "accept": verdict.accept[0],
                                          "p_yes": float(verdict.output.scores[0]), "explanation": verdict.explanations[0]}
            p_yes[current.index] = float(verdict.output.scores[0])
            result.trace.append(TraceEvent("reflect", None, [current.index], dict(current.info["reflection"])))
            if verdict.accept[0]:
                accepted = True
                break
            feedback = verdict.explanations[0] or ""
            seed = reflection_seed(slot.seed, slot.prompt_index, slot.sample_index, round_index)
            new = Candidate(index=len(result.candidates), seed=seed, parent=current.index, round=round_index,
                            info={"feedback": feedback})
            if showo:
                new.tokens, passes = self._self_correct(corrector, fmt, pipe, slot, sampling, current, feedback, seed)
            else:
                new.tokens, passes = self._regenerate(corrector, slot, sampling, feedback, seed)
            result.cost.generator_forward_passes += passes
            result.candidates.append(new)
            result.image = images[new.index] = decode_images(pipe, new.tokens[None], result.cost)[0]
            detail = {"round": round_index, "from": current.index, "forward_passes": passes}
            result.trace.append(TraceEvent("correct", None, [new.index], detail if showo else {**detail,
                                                                                              "mode": "regenerate"}))
            current = new
        if not accepted and p_yes and self.if_never_accepted == "best":
            current = self._best_of_loop(result, slot, current, p_yes, images)
        result.chosen = current.index
        return result

    def _best_of_loop(self, result: SearchResult, slot: Slot, last: Candidate, p_yes: dict[int, float],
                      images: dict) -> Candidate:
        """``if_never_accepted="best"``: judge the last correction (if it was not), then the loop's image with the
        highest P("yes"), ties to the earlier one; ``result.image`` becomes it."""
        if last.index not in p_yes:
            out = self.parmpp.judge_match([slot.prompt], [images[last.index]])
            result.cost.add_judge(out.cost)
            p_yes[last.index] = float(out.scores[0])
            last.info["final_judgment"] = {"p_yes": p_yes[last.index]}
            result.trace.append(TraceEvent("score", None, [last.index], {"p_yes": p_yes[last.index],
                                                                         "rule": "reflection"}))
        order = list(p_yes)  # the loop's order: PARM's pick, then each correction
        best = max(order, key=lambda i: (p_yes[i], -order.index(i)))
        result.trace.append(TraceEvent("select", None, [best], {"rule": "highest_reflection",
                                                                 "p_yes": [p_yes[i] for i in order],
                                                                 "order": order}))
        result.image = images[best]
        return result.candidates[best]

    @staticmethod
    def _self_correct(corrector: ShowoPipeline, fmt: SelfCorrectionFormat, pipe: ShowoPipeline, slot: Slot,
                      sampling: Sampling, previous: Candidate, feedback: str, seed: int) -> tuple[torch.Tensor, int]:
        """Show-o: the next image's codes [N] from (prompt, feedback, previous tokens), and the passes spent."""
        prompt_ids, feedback_ids = pipe.prompting.tokenize([slot.prompt, feedback])
        input_ids = fmt.build([prompt_ids], [feedback_ids], previous.tokens[None])
        group = PathGroup(corrector, slot.prompt, [0], [seed], sampling, batch_size=1, input_ids=input_ids)
        while not group.done:
            group.step()
        return group.final_tokens()[0].cpu(), group.forward_passes

    @staticmethod
    def _regenerate(corrector: ImageGenerator, slot: Slot, sampling: Sampling, feedback: str,
                    seed: int) -> tuple[torch.Tensor, int]:
        """Janus-Pro: the next image's codes [N] generated from ``"{prompt}. {feedback}"``, and the passes spent."""
        state = corrector.prepare([slot.prompt], generator=candidate_generators([seed], corrector.device),
                                  cots=[feedback], **sampling)
        while not state.done:
            corrector.step(state)
        return state.final_tokens[0].cpu(), state.forward_passes
