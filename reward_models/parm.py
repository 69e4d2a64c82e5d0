"""PARM, the Potential Assessment Reward Model, as a stateful per-step decision API (paper §6, reference §6, §17).

For each of N paths (candidate generations of one prompt / sample slot):

1. **clarity judgment** of the step's predicted clean image, at every step until the first step judged clear;
2. **potential assessment** at that first clear step, asked as a follow-up turn after a literal assistant "yes"
   to the clarity question (released code; the paper's §17 reading agrees); no potential → the path is
   **pruned** (paper) or only excluded from selection (released code, ``truncate=False``);
3. **best-of-N'** among paths with potential, by P("yes") to the ORM question asked of the PARM weights;
   if N' = 0, the **fallback** picks the path with the lowest potential-assessment P("no") (paths never judged
   clear get P("no") = 1.0, as in the released code).

A search loop drives it from outside::

    state = parm.new_state(num_paths)
    for step in range(num_steps):
        judged = parm.judges_step(step, num_steps)  # False before ``clarity_from``
        images = [decode(i) if judged and i in state.awaiting_paths() else None for i in range(num_paths)]
        decision = parm.observe_step(state, prompts, images, step, num_steps)
        stop decoding decision.pruned_paths
    selection = parm.select(state, prompts, final_images)   # final_images[i] may be None for pruned paths

Released-code behaviour is reproduced with ``truncate=False, clear_unless_no=True, malformed_potential_p_no=50.0``
and a judge in ``mode="sample"`` (decisions are sampled first tokens, bugs #2-#5 of reference §13).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from PIL import Image

from reward_models.base import JudgeCost, YesNoJudge, validate_images, validate_step
from reward_models.data import rule_clarity_start
from reward_models.lmm_judge import user_turn
from reward_models.questions import CLARITY_CODE, ORM_QUESTION, POTENTIAL_CODE

__all__ = ["Parm", "ParmDecision", "ParmResult", "ParmSelection", "ParmState", "PathRecord"]


@dataclass
class PathRecord:
    """What PARM knows about one path. Steps are 0-based."""

    clear_step: int | None = None  # first step judged clear
    potential: bool | None = None  # decided at clear_step (False for a path never judged clear)
    p_no: float | None = None  # potential-assessment P("no"): the fallback key
    pruned_step: int | None = None  # step at which the path was truncated (truncate=True only)
    clarity_checks: int = 0

    @property
    def decided(self) -> bool:
        return self.potential is not None


@dataclass
class ParmDecision:
    """What one ``observe_step`` call decided; path indices refer to the state's paths."""

    step: int
    judged_paths: list[int]  # clarity asked this step
    clear_paths: list[int]  # first judged clear at this step
    potential_paths: list[int]  # clear at this step and with potential
    no_potential_paths: list[int]  # clear at this step without potential (or never clear, at the last step)
    pruned_paths: list[int]  # stop decoding these now (empty when truncate=False)
    active_paths: list[int]  # still to be decoded after this step
    awaiting_paths: list[int]  # still need a predicted image at the next step
    cost: JudgeCost


@dataclass
class ParmState:
    """Per-slot PARM state across steps; create with :meth:`Parm.new_state`."""

    num_paths: int
    paths: list[PathRecord]
    prompts: list[str] | None = None
    num_steps: int | None = None
    last_step: int = -1
    cost: JudgeCost = field(default_factory=JudgeCost)
    decisions: list[ParmDecision] = field(default_factory=list)

    def awaiting_paths(self) -> list[int]:
        """Paths whose next predicted image PARM needs (not yet clear, not pruned)."""
        return [i for i, p in enumerate(self.paths) if not p.decided and p.pruned_step is None]

    def active_paths(self) -> list[int]:
        """Paths still being decoded (not pruned)."""
        return [i for i, p in enumerate(self.paths) if p.pruned_step is None]

    @property
    def finished(self) -> bool:
        """Every path has a potential decision."""
        return all(p.decided for p in self.paths)


@dataclass
class ParmSelection:
    """The outcome of best-of-N' (or the fallback)."""

    index: int
    used_fallback: bool
    candidates: list[int]  # paths with potential, scored with the selection question
    scores: torch.Tensor  # [N] selection P("yes"); NaN for paths that were not candidates
    p_no: torch.Tensor  # [N] potential-assessment P("no"); NaN where none was recorded
    clear_steps: list[int | None]
    pruned_steps: list[int | None]
    needs_completion: bool  # the winner was pruned and has no final image: the search must finish decoding it
    cost: JudgeCost


@dataclass
class ParmResult:
    """:meth:`Parm.run_on_pool` output: the selection, every step's decision and the total judge cost."""

    selection: ParmSelection
    decisions: list[ParmDecision]
    cost: JudgeCost


class Parm:
    """PARM procedure over a :class:`~reward_models.base.YesNoJudge` (the PARM weights).

    Args:
        judge: yes/no judge; its ``mode`` decides whether answers are deterministic or sampled.
        clarity_question, potential_question, selection_question: templates (``None`` = released-code
            clarity / potential wording and the ORM question, reference §6.2); the paper wording is in
            :mod:`reward_models.questions` (``CLARITY_PAPER``, ``POTENTIAL_PAPER``).
        truncate: prune paths without potential (paper); ``False`` = released code (selection-only filter).
        clear_unless_no: released rule: any answer other than "no" counts as clear (bug #3); default: only "yes".
        potential_follow_up: ask potential as a text-only turn after the clarity turn and a literal assistant
            "yes" (released code); ``False`` asks it alone with the image.
        malformed_potential_p_no: P("no") recorded for a potential answer that is neither yes nor no (only sampled
            answers can be); released code: 50.0, which excludes the path from the fallback (bug #4). ``None``
            keeps the measured P("no").
        never_clear_p_no: P("no") of a path never judged clear (released code: 1.0).
        reuse_clarity_cache: ask the potential follow-up on the key/value cache of the step's clarity turn (same
            image, same first turn) instead of encoding the image and the clarity question again; needs
            ``potential_follow_up`` and a judge with ``ask_keeping_cache`` / ``ask_follow_up``
            (:class:`~reward_models.lmm_judge.LMMYesNoJudge`). Scores equal the uncached ones up to float rounding
            (tested in float64); off by default.
        clarity_from: the first step (0-based) at which the clarity question is asked; earlier steps are neither
            decoded nor judged. ``0`` (default) asks from the first step, as the paper and the released code do.
            ``"rule"``: from the first step the static training rule of §6.4 does not label "no"
            (:func:`reward_models.data.clarity_steps`: step 10 of 18, step 7 of 12, 1-based) -- the answer a judge
            that learned its clarity labels gives at the earlier steps is "no" anyway, so those calls are skipped.
            A judge that answers "yes" earlier decides later than it would have (measured in docs/speed.md). A
            negative value counts from the end, as a Python index does: ``-2`` asks from the second-to-last step
            whatever the step count (the shapes world's PARM, whose step images show what their path ends with only
            there: docs/shapes_world.md). The last step is always judged.
    """

    def __init__(
        self,
        judge: YesNoJudge,
        clarity_question: str | None = None,
        potential_question: str | None = None,
        selection_question: str | None = None,
        truncate: bool = True,
        clear_unless_no: bool = False,
        potential_follow_up: bool = True,
        malformed_potential_p_no: float | None = None,
        never_clear_p_no: float = 1.0,
        reuse_clarity_cache: bool = False,
        clarity_from: int | str = 0,
    ) -> None:
        if not (clarity_from == "rule" or (isinstance(clarity_from, int) and not isinstance(clarity_from, bool))):
            raise ValueError(f"Parm.clarity_from must be a step index (negative: from the end) or 'rule', "
                             f"got {clarity_from!r}")
        if reuse_clarity_cache and not potential_follow_up:
            raise ValueError("Parm.reuse_clarity_cache needs potential_follow_up=True: only a follow-up turn extends "
                             "the clarity conversation")
        if reuse_clarity_cache and not all(hasattr(judge, m) for m in ("ask_keeping_cache", "ask_follow_up")):
            raise ValueError(f"Parm.reuse_clarity_cache needs a judge with ask_keeping_cache / ask_follow_up; "
                             f"{type(judge).__name__} has none")
        self.judge = judge
        self.clarity_question = CLARITY_CODE if clarity_question is None else clarity_question
        self.potential_question = POTENTIAL_CODE if potential_question is None else potential_question
        self.selection_question = ORM_QUESTION if selection_question is None else selection_question
        self.truncate = truncate
        self.clear_unless_no = clear_unless_no
        self.potential_follow_up = potential_follow_up
        self.malformed_potential_p_no = malformed_potential_p_no
        self.never_clear_p_no = never_clear_p_no
        self.reuse_clarity_cache = reuse_clarity_cache
        self.clarity_from = clarity_from

    def first_clarity_step(self, num_steps: int) -> int:
        """The first step (0-based) of ``num_steps`` at which the clarity question is asked (``clarity_from``)."""
        if self.clarity_from == "rule":
            first = rule_clarity_start(num_steps)
        else:
            first = int(self.clarity_from) + (num_steps if self.clarity_from < 0 else 0)
        return min(max(first, 0), num_steps - 1)

    def judges_step(self, step: int, num_steps: int) -> bool:
        """Whether step ``step`` asks anything (a search loop decodes the awaiting paths' images only then)."""
        return step >= self.first_clarity_step(num_steps)

    def new_state(self, num_paths: int) -> ParmState:
        if num_paths < 1:
            raise ValueError(f"PARM needs at least one path, got num_paths={num_paths}")
        return ParmState(num_paths=num_paths, paths=[PathRecord() for _ in range(num_paths)])

    # ------------------------------------------------------------------ conversations
    def clarity_conversation(self, prompt: str) -> list[dict[str, str]]:
        return [user_turn(self.clarity_question, prompt, self.judge.image_token)]

    def potential_conversation(self, prompt: str) -> list[dict[str, str]]:
        """Released code: clarity turn with the image, assistant "yes", potential turn without image (§6.3)."""
        if not self.potential_follow_up:
            return [user_turn(self.potential_question, prompt, self.judge.image_token)]
        return [
            *self.clarity_conversation(prompt),
            {"role": "assistant", "content": "yes"},
            user_turn(self.potential_question, prompt, None),
        ]

    # ------------------------------------------------------------------ per-step API
    def observe_step(
        self,
        state: ParmState,
        prompts: Sequence[str],
        step_images: Sequence[Image.Image | None],
        step: int,
        num_steps: int,
    ) -> ParmDecision:
        """Judge step ``step`` (0-based) of ``num_steps`` for the paths awaiting a clarity decision.

        ``prompts`` and ``step_images`` have one entry per path; ``step_images[i]`` is path i's predicted clean
        image and may be ``None`` for paths not in ``state.awaiting_paths()`` or at a step that is not judged
        (``judges_step``: before ``clarity_from``). Steps must increase across calls.
        """
        self._check_call(state, prompts, step, num_steps)
        awaiting = state.awaiting_paths() if self.judges_step(step, num_steps) else []
        images = self._images_for(step_images, awaiting, state.num_paths, "step_images")
        clear, cost, cache = self._judge_clarity(state, prompts, awaiting, images, step)
        clear_images = [images[awaiting.index(i)] for i in clear]
        cached_rows = None if cache is None else (cache, [awaiting.index(i) for i in clear])
        potential, no_potential, pruned, assess_cost = self._assess_potential(state, prompts, clear, clear_images, step,
                                                                              cached_rows)
        cost = cost + assess_cost
        if step == num_steps - 1:
            for i in state.awaiting_paths():
                state.paths[i].potential = False
                state.paths[i].p_no = self.never_clear_p_no
                no_potential.append(i)
        state.last_step = step
        state.cost = state.cost + cost
        decision = ParmDecision(
            step=step,
            judged_paths=awaiting,
            clear_paths=clear,
            potential_paths=potential,
            no_potential_paths=no_potential,
            pruned_paths=pruned,
            active_paths=state.active_paths(),
            awaiting_paths=state.awaiting_paths(),
            cost=cost,
        )
        state.decisions.append(decision)
        return decision

    def select(
        self, state: ParmState, prompts: Sequence[str], final_images: Sequence[Image.Image | None]
    ) -> ParmSelection:
        """Best-of-N' among paths with potential (selection question, P("yes")), else the P("no") fallback.

        ``final_images[i]`` is required for every path with potential; others may be ``None``.
        """
        if state.prompts is not None and list(prompts) != state.prompts:
            raise ValueError("PARM select: prompts differ from the ones observed in this state")
        undecided = [i for i, p in enumerate(state.paths) if not p.decided]
        if undecided:
            raise ValueError(
                f"PARM select: paths {undecided} have no potential decision yet; observe steps up to the last one"
            )
        if len(final_images) != state.num_paths:
            raise ValueError(f"PARM select: got {len(final_images)} final_images for {state.num_paths} paths")
        candidates = [i for i, p in enumerate(state.paths) if p.potential]
        scores = torch.full((state.num_paths,), float("nan"))
        cost = JudgeCost()
        if candidates:
            images = self._images_for(final_images, candidates, state.num_paths, "final_images")
            token = self.judge.image_token
            conversations = [[user_turn(self.selection_question, prompts[i], token)] for i in candidates]
            out = self.judge.ask(conversations, images)
            cost = out.cost
            scores[candidates] = out.scores.float()
            # argmax returns the first maximum, so ties go to the lowest path index.
            index = candidates[int(torch.argmax(out.scores))]
        else:
            p_no = torch.tensor([p.p_no for p in state.paths], dtype=torch.float64)
            index = int(torch.argmin(p_no))
        state.cost = state.cost + cost
        return ParmSelection(
            index=index,
            used_fallback=not candidates,
            candidates=candidates,
            scores=scores,
            p_no=torch.tensor([float("nan") if p.p_no is None else p.p_no for p in state.paths]),
            clear_steps=[p.clear_step for p in state.paths],
            pruned_steps=[p.pruned_step for p in state.paths],
            needs_completion=final_images[index] is None,
            cost=cost,
        )

    def run_on_pool(
        self,
        prompts: Sequence[str],
        step_images: Sequence[Sequence[Image.Image]],
        final_images: Sequence[Image.Image],
    ) -> ParmResult:
        """The whole procedure on precomputed images: ``step_images[i][t]`` is path i's image at step t.

        With precomputed images truncation saves no generation, but selection and the reported pruning are the
        same as in a live search. Stops judging once every path is decided.
        """
        if len(step_images) != len(prompts) or len(final_images) != len(prompts):
            raise ValueError(
                f"run_on_pool: {len(prompts)} prompts, {len(step_images)} step-image lists, "
                f"{len(final_images)} final images"
            )
        num_steps = len(step_images[0]) if step_images else 0
        if any(len(steps) != num_steps for steps in step_images):
            lengths = [len(s) for s in step_images]
            raise ValueError(f"run_on_pool: every path needs the same number of steps, got {lengths}")
        state = self.new_state(len(prompts))
        for step in range(num_steps):
            if state.finished:
                break
            awaiting = set(state.awaiting_paths()) if self.judges_step(step, num_steps) else set()
            images = [step_images[i][step] if i in awaiting else None for i in range(len(prompts))]
            self.observe_step(state, prompts, images, step, num_steps)
        selection = self.select(state, prompts, final_images)
        return ParmResult(selection=selection, decisions=list(state.decisions), cost=state.cost)

    def _judge_clarity(
        self, state: ParmState, prompts: Sequence[str], awaiting: list[int], images: list[Image.Image], step: int
    ) -> tuple[list[int], JudgeCost, object]:
        """Task 1 (§6.1): which awaiting paths are clear at this step (and the turn's cache when reusing it)."""
        if not awaiting:
            return [], JudgeCost(), None
        conversations = [self.clarity_conversation(prompts[i]) for i in awaiting]
        cache = None
        if self.reuse_clarity_cache:
            out, cache = self.judge.ask_keeping_cache(conversations, images)
        else:
            out = self.judge.ask(conversations, images)
        yes, no = out.components["answer_yes"], out.components["answer_no"]
        clear = []
        for k, i in enumerate(awaiting):
            state.paths[i].clarity_checks += 1
            # Released rule (bug #3): anything but "no" is clear; paper: only "yes".
            if bool(no[k] == 0) if self.clear_unless_no else bool(yes[k] == 1):
                state.paths[i].clear_step = step
                clear.append(i)
        return clear, out.cost, cache

    def _assess_potential(
        self, state: ParmState, prompts: Sequence[str], clear: list[int], images: list[Image.Image], step: int,
        cached_rows: tuple[object, list[int]] | None = None,
    ) -> tuple[list[int], list[int], list[int], JudgeCost]:
        """Task 2 (§6.1): potential of the paths that just became clear; prunes those without when truncating.

        ``cached_rows`` = (the clarity turn's cache, the row of each clear path in it): ask on the cache."""
        potential: list[int] = []
        no_potential: list[int] = []
        pruned: list[int] = []
        if not clear:
            return potential, no_potential, pruned, JudgeCost()
        conversations = [self.potential_conversation(prompts[i]) for i in clear]
        if cached_rows is None:
            out = self.judge.ask(conversations, images)
        else:
            out = self.judge.ask_follow_up(cached_rows[0], cached_rows[1], conversations)
        for k, i in enumerate(clear):
            has_potential = bool(out.components["answer_yes"][k] == 1)
            malformed = not has_potential and bool(out.components["answer_no"][k] == 0)
            record = state.paths[i]
            record.potential = has_potential
            record.p_no = float(out.components["p_no"][k])
            if malformed and self.malformed_potential_p_no is not None:
                record.p_no = self.malformed_potential_p_no
            (potential if has_potential else no_potential).append(i)
            if not has_potential and self.truncate:
                record.pruned_step = step
                pruned.append(i)
        return potential, no_potential, pruned, out.cost

    # ------------------------------------------------------------------ helpers
    def _check_call(self, state: ParmState, prompts: Sequence[str], step: int, num_steps: int) -> None:
        validate_step(step, num_steps)
        if isinstance(prompts, str) or len(prompts) != state.num_paths:
            raise ValueError(f"PARM: expected {state.num_paths} prompts (one per path), got {len(prompts)}")
        if state.prompts is None:
            state.prompts = list(prompts)
        elif list(prompts) != state.prompts:
            raise ValueError("PARM: prompts changed between steps of the same state")
        if state.num_steps is None:
            state.num_steps = num_steps
        elif num_steps != state.num_steps:
            raise ValueError(f"PARM: num_steps changed from {state.num_steps} to {num_steps}")
        if step <= state.last_step:
            raise ValueError(f"PARM: step {step} observed after step {state.last_step}; steps must increase")

    @staticmethod
    def _images_for(
        images: Sequence[Image.Image | None], needed: list[int], num_paths: int, name: str
    ) -> list[Image.Image]:
        if len(images) != num_paths:
            raise ValueError(f"PARM: {name} has {len(images)} entries for {num_paths} paths")
        missing = [i for i in needed if images[i] is None]
        if missing:
            raise ValueError(f"PARM: {name} is None for paths {missing}, which PARM must judge")
        picked = [images[i] for i in needed]
        validate_images(picked, name=name, indices=needed)
        return picked  # type: ignore[return-value]
