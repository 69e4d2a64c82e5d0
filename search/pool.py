"""Generate once, select many: per-slot candidate pools and the selection policies replayed on them.

:func:`build_pool_entry` decodes N paths of one slot **to the end** (no pruning) and records, per candidate, its seed,
final tokens and whatever the given judges say: the outcome score of the final image, process scores of the
predicted image at chosen steps, and PARM's per-path record (first clear step, potential, P("no"), the step it
would be pruned at, the best-of-N' score). A selection policy then picks a candidate from those numbers alone, and
reports the generator forward passes the equivalent live strategy would have spent:

==================  ===========================================================  ================================
policy              pick                                                         live equivalent
==================  ===========================================================  ================================
``first``           candidate 0 (the baseline image)                             plain generation
``random``          a seeded uniform pick among the first N                      —
``orm@N``           argmax outcome score among the first N                       :class:`search.best_of_n.BestOfN`
``parm@N``          PARM's best-of-N' / fallback among the first N               :class:`search.parm.ParmSearch`
``prm-beam@N``      prune to ``keep`` at scheduled steps, argmax at the end      :class:`search.step_level.StepLevelSearch` with ``expansion=1``
==================  ===========================================================  ================================

Per-path PARM decisions do not depend on the other paths, so ``parm@N`` on the first N candidates of a pool of
M >= N equals a live PARM search with N paths. Forward passes are counted per image in the generator's unit
(:meth:`PoolEntry.passes`: one per step for Show-o; ``step_passes`` holds the codes drawn after each step for
Janus-Pro, whose CoT tokens, one plan per candidate, are counted apart: :meth:`PoolEntry.plan_passes`, and every
policy adds the plans of the candidates its live strategy writes). A Janus-Pro's plans are kept in
``extras["cots"]``, their passes in ``extras["plan_passes"]``. A pool is one JSON file per slot, written atomically, so an
interrupted pool build resumes slot by slot.
"""
from __future__ import annotations

import json
import os
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import torch

from common.generator import ImageGenerator
from common.io import atomic_write_text
from reward_models.base import OutcomeJudge, ProcessJudge
from reward_models.parm import Parm
from search.base import (Candidate, CostCounter, PathGroup, Sampling, SearchResult, Slot, TraceEvent, argmax_first,
                         decode_images, record_cots)
from search.step_level import keep_schedule, rank_paths

POOL_VERSION = 2  # 2: named_scores, ParmRecord.clarity_checks (version 1 entries still read)


@dataclass
class ParmRecord:
    clear_step: Optional[int]
    potential: bool
    p_no: float
    pruned_step: Optional[int]  # where a truncating PARM stops the path (None: decoded to the end)
    score: Optional[float]  # best-of-N' score (None: not a survivor)
    clarity_checks: Optional[int] = None  # clarity questions asked about this path (None: not recorded, version 1)


@dataclass
class PoolEntry:
    """All candidates of one slot. ``process_scores[i]`` maps step -> score of candidate i's predicted image."""

    slot: Slot
    num_steps: int
    seeds: list[int]
    tokens: torch.Tensor  # [M, N] final codes
    outcome_scores: Optional[list[float]] = None
    process_scores: Optional[list[dict[int, float]]] = None
    parm: Optional[list[ParmRecord]] = None
    named_scores: dict[str, list[float]] = field(default_factory=dict)  # more outcome judges, e.g. {"oracle": [...]}
    named_parm: dict[str, list[ParmRecord]] = field(default_factory=dict)  # more PARMs' records, e.g. {"parmpp": [...]}
    cost: dict[str, int] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)  # e.g. GenEval correctness per candidate
    step_passes: Optional[list[int]] = None  # passes per image after steps 1..num_steps; None: one per step (Show-o)

    @property
    def size(self) -> int:
        return len(self.seeds)

    def plan_passes(self, candidate: int) -> int:
        """Generator forward passes of candidate ``candidate``'s plan (Janus-Pro's semantic CoT, written before its
        first code; ``extras["plan_passes"]``); 0 without one."""
        return int((self.extras.get("plan_passes") or [0] * self.size)[candidate])

    def passes(self, steps: int) -> int:
        """Generator forward passes one candidate spends in its first ``steps`` steps (its plan apart:
        :meth:`plan_passes`)."""
        if self.step_passes is None:
            return steps
        return 0 if steps <= 0 else self.step_passes[min(steps, self.num_steps) - 1]

    def to_json(self) -> dict[str, Any]:
        return {
            "version": POOL_VERSION, "slot": asdict(self.slot), "num_steps": self.num_steps, "seeds": self.seeds,
            "tokens": self.tokens.tolist(), "outcome_scores": self.outcome_scores,
            "process_scores": None if self.process_scores is None else
            [{str(k): v for k, v in d.items()} for d in self.process_scores],
            "parm": None if self.parm is None else [asdict(r) for r in self.parm],
            "named_scores": self.named_scores, "cost": self.cost, "extras": self.extras,
            **({"named_parm": {k: [asdict(r) for r in v] for k, v in self.named_parm.items()}} if self.named_parm
               else {}),
            **({"step_passes": self.step_passes} if self.step_passes is not None else {}),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], source: str = "<dict>") -> "PoolEntry":
        if data.get("version") not in (1, POOL_VERSION):
            raise ValueError(f"{source}: pool version {data.get('version')!r}, this code reads 1 and {POOL_VERSION}")
        missing = [k for k in ("slot", "num_steps", "seeds", "tokens") if k not in data]
        if missing:
            raise ValueError(f"{source}: missing fields {missing}")
        process = data.get("process_scores")
        return cls(
            slot=Slot(**data["slot"]), num_steps=int(data["num_steps"]), seeds=[int(s) for s in data["seeds"]],
            tokens=torch.tensor(data["tokens"], dtype=torch.long), outcome_scores=data.get("outcome_scores"),
            process_scores=None if process is None else [{int(k): float(v) for k, v in d.items()} for d in process],
            parm=None if data.get("parm") is None else [ParmRecord(**r) for r in data["parm"]],
            named_scores={k: [float(x) for x in v] for k, v in data.get("named_scores", {}).items()},
            named_parm={k: [ParmRecord(**r) for r in v] for k, v in data.get("named_parm", {}).items()},
            cost=data.get("cost", {}), extras=data.get("extras", {}), step_passes=data.get("step_passes"),
        )


def entry_path(pool_dir: str | os.PathLike, prompt_index: int, sample_index: int) -> Path:
    return Path(pool_dir) / f"{prompt_index:05d}_{sample_index:02d}.json"


def save_entry(pool_dir: str | os.PathLike, entry: PoolEntry) -> Path:
    path = entry_path(pool_dir, entry.slot.prompt_index, entry.slot.sample_index)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(entry.to_json()))
    return path


def load_entry(path: str | os.PathLike) -> PoolEntry:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pool entry not found: {path}")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: invalid JSON ({err.msg})") from err
    return PoolEntry.from_json(data, str(path))


def load_pool(pool_dir: str | os.PathLike) -> list[PoolEntry]:
    """Every ``<prompt>_<sample>.json`` of a pool directory, sorted by (prompt, sample)."""
    pool_dir = Path(pool_dir)
    if not pool_dir.is_dir():
        raise FileNotFoundError(f"pool directory not found: {pool_dir}")
    paths = sorted(p for p in pool_dir.glob("*_*.json") if not p.name.startswith("."))
    if not paths:
        raise FileNotFoundError(f"no pool entries (<prompt:05d>_<sample:02d>.json) in {pool_dir}")
    return [load_entry(p) for p in paths]


def build_pool_entry(pipe: ImageGenerator, slot: Slot, sampling: Sampling, num_candidates: int,
                     outcome_judge: Optional[OutcomeJudge] = None, process_judge: Optional[ProcessJudge] = None,
                     parm: Optional[Parm] = None, process_steps: Optional[Sequence[int]] = None,
                     batch_size: int = 20, judges: Optional[dict[str, OutcomeJudge]] = None,
                     parms: Optional[dict[str, Parm]] = None) -> PoolEntry:
    """Decode ``num_candidates`` paths to the end and score them with every judge given (see the module doc);
    ``judges`` are further outcome judges stored by name (``entry.named_scores``), e.g. the shapes world's oracle;
    ``parms`` further PARMs whose per-path records are stored by name (``entry.named_parm``), e.g. PARM++'s judge."""
    return build_pool_entries(pipe, [slot], sampling, num_candidates, outcome_judge, process_judge, parm,
                              process_steps, batch_size, judges, parms)[0]


def build_pool_entries(pipe: ImageGenerator, slots: Sequence[Slot], sampling: Sampling, num_candidates: int,
                       outcome_judge: Optional[OutcomeJudge] = None, process_judge: Optional[ProcessJudge] = None,
                       parm: Optional[Parm] = None, process_steps: Optional[Sequence[int]] = None,
                       batch_size: int = 20, judges: Optional[dict[str, OutcomeJudge]] = None,
                       parms: Optional[dict[str, Parm]] = None) -> list[PoolEntry]:
    """:func:`build_pool_entry` for each of ``slots``, their paths decoded together in chunks of ``batch_size`` rows
    (one prompt per row, each path its own generator); every judge is called per slot as for one slot alone, so each
    entry is the one :func:`build_pool_entry` writes for its slot."""
    judges = dict(judges or {})
    # every PARM by name (None: ``parm``, stored in entry.parm), each with its own state per slot
    procedures = {**({None: parm} if parm is not None else {}), **dict(parms or {})}
    n, num_steps = num_candidates, pipe.num_steps(sampling)
    ids = list(range(n))
    steps = set(range(num_steps) if process_steps is None else process_steps) if process_judge is not None else set()
    group = PathGroup(pipe, [slot.prompt for slot in slots for _ in ids], list(range(len(slots) * n)),
                      [slot.candidate_seed(i) for slot in slots for i in ids], sampling, batch_size)
    costs = [CostCounter() for _ in slots]
    process: list[list[dict[int, float]]] = [[{} for _ in ids] for _ in slots]
    states = [{name: p.new_state(n) for name, p in procedures.items()} for _ in slots]
    while not group.done:
        step = group.step_index
        preds = group.step()
        for k, (slot, cost, slot_states) in enumerate(zip(slots, costs, states)):
            prompts = [slot.prompt] * n
            need = set(ids) if step in steps else set()
            for name, state in slot_states.items():
                if procedures[name].judges_step(step, num_steps):
                    need |= set(state.awaiting_paths())
            order = sorted(need)
            decoded = dict(zip(order, decode_images(pipe, torch.stack([preds[k * n + i] for i in order]), cost))) \
                if order else {}
            if step in steps:
                out = process_judge.score_steps(prompts, [decoded[i] for i in ids], step, num_steps)
                cost.add_judge(out.cost)
                for i, s in zip(ids, out.scores.tolist()):
                    process[k][i][step] = float(s)
            for name, state in slot_states.items():
                decision = procedures[name].observe_step(state, prompts, [decoded.get(i) for i in ids], step,
                                                         num_steps)
                if name is None:  # judge cost: what the stored pool's ``parm`` asked; named PARMs' questions are
                    # extra (not counted), the images decoded for them are (``decoded_images``: every decode made)
                    cost.add_judge(decision.cost,
                                   calls=int(bool(decision.judged_paths)) + int(bool(decision.clear_paths)))
    final, passes = group.final_tokens(), group.path_forward_passes()
    step_passes = [pipe.image_forward_passes(sampling, k) for k in range(1, num_steps + 1)]
    entries = []
    for k, (slot, cost, slot_states) in enumerate(zip(slots, costs, states)):
        prompts = [slot.prompt] * n
        cost.generator_forward_passes = sum(passes[k * n + i] for i in ids)
        tokens = torch.stack([final[k * n + i].cpu() for i in ids])
        images = decode_images(pipe, tokens, cost) if (outcome_judge is not None or procedures or judges) else None
        entry = PoolEntry(slot=slot, num_steps=num_steps, seeds=[slot.candidate_seed(i) for i in ids], tokens=tokens,
                          process_scores=process[k] if process_judge is not None else None,
                          step_passes=None if step_passes == list(range(1, num_steps + 1)) else step_passes)
        if group.cots:
            entry.extras["cots"] = [group.cots.get(k * n + i) for i in ids]
        plans = [passes[k * n + i] - entry.passes(num_steps) for i in ids]  # what a path spent before its first code
        if any(plans):
            entry.extras["plan_passes"] = plans
        if outcome_judge is not None:
            out = outcome_judge.score(prompts, images)
            cost.add_judge(out.cost)
            entry.outcome_scores = [float(s) for s in out.scores.tolist()]
        for name, judge in judges.items():  # not counted in the cost: what the stored pool spent on its own selection
            entry.named_scores[name] = [float(s) for s in judge.score(prompts, images).scores.tolist()]
        for name, state in slot_states.items():
            selection = procedures[name].select(state, prompts, images)
            if selection.candidates and name is None:
                cost.add_judge(selection.cost)
            records = [ParmRecord(r.clear_step, bool(r.potential), float(r.p_no), r.pruned_step,
                                  None if i not in selection.candidates else float(selection.scores[i]),
                                  r.clarity_checks)
                       for i, r in enumerate(state.paths)]
            if name is None:
                entry.parm = records
            else:
                entry.named_parm[name] = records
        entry.cost = cost.as_dict()
        entries.append(entry)
    return entries


class PoolBuilder:
    """A strategy-shaped pool build for ``scripts/search.py`` (``search=pool``): stores the entry and picks with
    ``policy`` (default: ``orm@N`` when an outcome judge is given, else ``first``) so the run also yields images."""

    name = "pool"

    def __init__(self, num_candidates: int = 20, outcome_judge: Optional[OutcomeJudge] = None,
                 process_judge: Optional[ProcessJudge] = None, parm: Optional[Parm] = None,
                 process_steps: Optional[Sequence[int]] = None, policy=None, batch_size: int = 20,
                 judges: Optional[dict[str, OutcomeJudge]] = None, parms: Optional[dict[str, Parm]] = None) -> None:
        self.num_candidates = num_candidates
        self.outcome_judge, self.process_judge, self.parm = outcome_judge, process_judge, parm
        self.judges = dict(judges or {})
        self.parms = dict(parms or {})
        self.process_steps = None if process_steps is None else list(process_steps)
        self.policy = policy or (OrmPolicy(num_candidates) if outcome_judge is not None else FirstPolicy())
        self.batch_size = batch_size

    @property
    def slots_per_call(self) -> int:
        """How many slots :meth:`search_many` decodes together: as many as fill ``batch_size`` rows (at least 1)."""
        return max(1, self.batch_size // self.num_candidates)

    def search(self, pipe: ImageGenerator, slot: Slot, sampling: Sampling) -> SearchResult:
        return self.search_many(pipe, [slot], sampling)[0]

    def search_many(self, pipe: ImageGenerator, slots: Sequence[Slot], sampling: Sampling) -> list[SearchResult]:
        """:meth:`search` for each of ``slots``, their paths decoded together (:func:`build_pool_entries`)."""
        entries = build_pool_entries(pipe, slots, sampling, self.num_candidates, self.outcome_judge,
                                     self.process_judge, self.parm, self.process_steps, self.batch_size, self.judges,
                                     self.parms)
        return [self._result(pipe, slot, entry) for slot, entry in zip(slots, entries)]

    def _result(self, pipe: ImageGenerator, slot: Slot, entry: PoolEntry) -> SearchResult:
        pick = self.policy.select(entry)
        candidates = [Candidate(index=i, seed=seed, tokens=entry.tokens[i],
                                score=None if entry.outcome_scores is None else entry.outcome_scores[i],
                                step_scores={} if entry.process_scores is None else entry.process_scores[i])
                      for i, seed in enumerate(entry.seeds)]
        record_cots(candidates, dict(enumerate(entry.extras.get("cots") or [])))
        cost = CostCounter(**entry.cost)
        trace = [TraceEvent("select", None, [pick.index], {"policy": self.policy.name})]
        image = decode_images(pipe, entry.tokens[pick.index][None], cost)[0] if pipe.can_decode else None
        return SearchResult(slot=slot, strategy=self.name, chosen=pick.index, candidates=candidates, trace=trace,
                            cost=cost, num_steps=entry.num_steps, image=image, extras={"pool_entry": entry})


# ---------------------------------------------------------------------------------------------------- policies
@dataclass(frozen=True)
class Pick:
    index: int
    forward_passes: int  # generator forward passes the live strategy would spend
    judge_passes: Optional[int] = 0  # judge (LMM) forward passes it would spend, per candidate image / question


def _check_n(entry: PoolEntry, n: Optional[int]) -> int:
    n = entry.size if n is None else n
    if not 1 <= n <= entry.size:
        raise ValueError(f"policy needs 1 <= N <= {entry.size} candidates (pool of slot "
                         f"{entry.slot.prompt_index}/{entry.slot.sample_index}), got N={n}")
    return n


def _plans(entry: PoolEntry, n: int) -> int:
    """The plans of the first ``n`` candidates: a live search over ``n`` paths writes each path's plan."""
    return sum(entry.plan_passes(i) for i in range(n))


@dataclass(frozen=True)
class FirstPolicy:
    """Candidate 0: the plain-generation baseline."""

    @property
    def name(self) -> str:
        return "first"

    def select(self, entry: PoolEntry) -> Pick:
        return Pick(0, entry.passes(entry.num_steps) + entry.plan_passes(0))


@dataclass(frozen=True)
class RandomPolicy:
    """A uniform pick among the first ``n`` candidates, seeded per slot (same pick on every re-run)."""

    n: Optional[int] = None
    seed: int = 0

    @property
    def name(self) -> str:
        return f"random@{self.n}" if self.n else "random"

    def select(self, entry: PoolEntry) -> Pick:
        n = _check_n(entry, self.n)
        rng = random.Random(f"{self.seed}/{entry.slot.prompt_index}/{entry.slot.sample_index}")
        index = rng.randrange(n)
        return Pick(index, entry.passes(entry.num_steps) + entry.plan_passes(index))


@dataclass(frozen=True)
class OrmPolicy:
    """Best-of-N by the stored outcome scores (ties: the lowest index)."""

    n: Optional[int] = None

    @property
    def name(self) -> str:
        return f"orm@{self.n}"

    def select(self, entry: PoolEntry) -> Pick:
        n = _check_n(entry, self.n)
        if entry.outcome_scores is None:
            raise ValueError(f"pool slot {entry.slot.prompt_index}/{entry.slot.sample_index} has no outcome scores")
        return Pick(argmax_first(entry.outcome_scores[:n]), n * entry.passes(entry.num_steps) + _plans(entry, n), n)


@dataclass(frozen=True)
class ScorePolicy:
    """Best-of-N by the stored scores of a named judge (``entry.named_scores[judge]``; ties: the lowest index)."""

    judge: str
    n: Optional[int] = None
    judge_passes_per_candidate: int = 1  # 0 for a judge that is no model (the shapes world's exact oracle)

    @property
    def name(self) -> str:
        return f"{self.judge}@{self.n}"

    def select(self, entry: PoolEntry) -> Pick:
        n = _check_n(entry, self.n)
        if self.judge not in entry.named_scores:
            raise ValueError(f"pool slot {entry.slot.prompt_index}/{entry.slot.sample_index} has no {self.judge!r} "
                             f"scores (has {sorted(entry.named_scores)})")
        return Pick(argmax_first(entry.named_scores[self.judge][:n]), n * entry.passes(entry.num_steps)
                    + _plans(entry, n), n * self.judge_passes_per_candidate)


@dataclass(frozen=True)
class ParmPolicy:
    """PARM among the first ``n`` candidates from the stored per-path records (paper §6.1).

    Forward passes: each path runs to its pruning step (all steps when not pruned), plus the steps the fallback
    winner had left when it was pruned (it is resumed), exactly as :class:`search.parm.ParmSearch` spends them.
    ``parm``: the records of a named PARM (``entry.named_parm``, e.g. PARM++'s judge) instead of the pool's PARM.
    """

    n: Optional[int] = None
    parm: Optional[str] = None

    @property
    def name(self) -> str:
        return f"parm@{self.n}" if self.parm is None else f"{self.parm}@{self.n}"

    def records(self, entry: PoolEntry) -> list[ParmRecord]:
        where = f"pool slot {entry.slot.prompt_index}/{entry.slot.sample_index}"
        if self.parm is None:
            if entry.parm is None:
                raise ValueError(f"{where} has no PARM records")
            return entry.parm
        if self.parm not in entry.named_parm:
            raise ValueError(f"{where} has no records of PARM {self.parm!r} (has {sorted(entry.named_parm)})")
        return entry.named_parm[self.parm]

    def select(self, entry: PoolEntry) -> Pick:
        n = _check_n(entry, self.n)
        records, s = self.records(entry)[:n], entry.num_steps
        survivors = [i for i, r in enumerate(records) if r.potential]
        if survivors:
            index = survivors[argmax_first([records[i].score for i in survivors])]
        else:
            index = int(torch.argmin(torch.tensor([r.p_no for r in records], dtype=torch.float64)))
        passes = sum(entry.passes(s if r.pruned_step is None else r.pruned_step + 1) for r in records) + _plans(entry, n)
        pruned = records[index].pruned_step
        if pruned is not None and pruned < s - 1:
            passes += entry.passes(s) - entry.passes(pruned + 1)  # the fallback winner resumed to its last step
        # judge: every clarity question, one potential question per clear path, one selection question per survivor
        checks = [r.clarity_checks for r in records]
        judge = None if None in checks else (sum(checks) + sum(r.clear_step is not None for r in records)
                                              + len(survivors))
        return Pick(index, passes, judge)


@dataclass(frozen=True)
class PrmBeamPolicy:
    """Process-judge pruning among the first ``n``: keep ``keep`` paths after each scheduled step, then the argmax
    of the process score at the last step (the live :class:`~search.step_level.StepLevelSearch`, ``expansion=1``)."""

    n: Optional[int] = None
    keep: int | tuple[int, ...] = 1
    schedule: tuple[int, ...] = ()

    @property
    def name(self) -> str:
        return f"prm-beam@{self.n}"

    def select(self, entry: PoolEntry) -> Pick:
        n = _check_n(entry, self.n)
        if entry.process_scores is None:
            raise ValueError(f"pool slot {entry.slot.prompt_index}/{entry.slot.sample_index} has no process scores")
        s = entry.num_steps
        keep = self.keep if isinstance(self.keep, int) else list(self.keep)
        live, stopped = list(range(n)), {}
        for step, k in keep_schedule(list(self.schedule), keep).items():
            scores = {i: self._score(entry, i, step) for i in live}
            kept = rank_paths(live, scores, k)
            stopped.update({i: step for i in live if i not in kept})
            live = kept
        final = [self._score(entry, i, s - 1) for i in live]
        passes = sum(entry.passes(stopped[i] + 1 if i in stopped else s) for i in range(n)) + _plans(entry, n)
        judged = sum(len([t for t in keep_schedule(list(self.schedule), keep) if t <= stopped.get(i, s)])
                     for i in range(n)) + len(live)
        return Pick(live[argmax_first(final)], passes, judged)

    @staticmethod
    def _score(entry: PoolEntry, i: int, step: int) -> float:
        scores = entry.process_scores[i]
        if step not in scores:
            raise ValueError(f"pool slot {entry.slot.prompt_index}/{entry.slot.sample_index}: candidate {i} has no "
                             f"process score at step {step} (pool built with other process_steps)")
        return scores[step]
