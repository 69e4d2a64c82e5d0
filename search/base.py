"""What every search strategy shares: the slot it searches, cost counters, the result, and a lockstep path runner.

A *slot* is one image to produce (prompt ``p``, sample ``s`` of GenEval's four). A strategy draws candidate paths for
the slot, each with its own generator (:mod:`search.seeds`), drives the generator from outside one step at a time
(``pipe.prepare`` / ``pipe.step`` / ``state.select``, STYLE.md point 2) -- any :class:`common.generator.ImageGenerator`:
Show-o, or Janus-Pro with or without its semantic CoT -- asks judges, and returns a :class:`SearchResult`: the chosen
image, every candidate with its seed, scores and (Janus-Pro with CoT) its plan (``info["cot"]``), the trace of
decisions and what it cost. Nothing here reads or writes files; images and tokens travel in memory.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Optional, Protocol, Sequence, runtime_checkable

import torch

from common.generator import GenerationState, ImageGenerator
from reward_models.base import JudgeCost
from search.seeds import candidate_generators, candidate_seed


@dataclass(frozen=True)
class Slot:
    """One image to search for: ``prompt`` is GenEval prompt ``prompt_index``, sample ``sample_index``."""

    prompt: str
    prompt_index: int = 0
    sample_index: int = 0
    seed: int = 0  # base seed of the run

    def candidate_seed(self, candidate_index: int) -> int:
        return candidate_seed(self.seed, self.prompt_index, self.sample_index, candidate_index)


# The generator's sampling settings shared by every path of a search: the keyword arguments of ``pipe.prepare``
# (``model.sampling`` in the configs, e.g. ``{"guidance_scale": 1.75, "num_inference_steps": 18}`` for Show-o,
# ``{"guidance_scale": 5.0, "temperature": 1.0, "top_k": None, "rows_per_step": 4}`` for Janus-Pro).
Sampling = Mapping[str, Any]


@dataclass
class CostCounter:
    """What a search cost. Generator forward passes are the generator's own count per image (``state.forward_passes``:
    one per step for Show-o, one per code and CoT token for Janus-Pro; CFG rows are not counted apart); judge counters
    add up :class:`JudgeCost`."""

    generator_forward_passes: int = 0
    judge_calls: int = 0  # judge invocations (one batched ask = one call)
    judge_forward_passes: int = 0  # per sample, from JudgeCost
    judge_generated_tokens: int = 0
    judge_images: int = 0
    decoded_images: int = 0  # VQ decodes of predicted / final images

    def add_judge(self, cost: JudgeCost, calls: int = 1) -> None:
        self.judge_calls += calls
        self.judge_forward_passes += cost.forward_passes
        self.judge_generated_tokens += cost.generated_tokens
        self.judge_images += cost.images_scored

    def __iadd__(self, other: "CostCounter") -> "CostCounter":
        for name, value in asdict(other).items():
            setattr(self, name, getattr(self, name) + value)
        return self

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass
class Candidate:
    """One generation path. ``tokens`` is ``None`` for a path stopped before its last step."""

    index: int
    seed: int
    parent: Optional[int] = None  # the path it branched from (step-level search)
    branch_step: Optional[int] = None  # step after which it branched
    round: int = 0  # 0 = search; r >= 1 = self-correction round r (PARM++)
    tokens: Optional[torch.Tensor] = None  # [N] final codes
    score: Optional[float] = None  # final selection score (higher is better)
    step_scores: dict[int, float] = field(default_factory=dict)  # step (0-based) -> process score
    stopped_step: Optional[int] = None  # last step decoded before the path was stopped
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return self.tokens is not None

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["tokens"] = None if self.tokens is None else self.tokens.tolist()
        out["step_scores"] = {str(k): v for k, v in self.step_scores.items()}
        return out


@dataclass
class TraceEvent:
    """One decision: ``action`` names it (``"score"``, ``"prune"``, ``"branch"``, ``"select"``, ``"reflect"`` ...),
    ``step`` is the 0-based decoding step it followed (``None`` after decoding), ``candidates`` the paths concerned."""

    action: str
    step: Optional[int]
    candidates: list[int]
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class SearchResult:
    """The outcome of searching one slot."""

    slot: Slot
    strategy: str
    chosen: int  # index into ``candidates`` (== candidate.index)
    candidates: list[Candidate]
    trace: list[TraceEvent]
    cost: CostCounter
    num_steps: int
    image: Any = None  # the chosen PIL image (None when the pipeline has no VQ model)
    extras: dict[str, Any] = field(default_factory=dict)  # e.g. the pool entry of a PoolBuilder run

    @property
    def tokens(self) -> torch.Tensor:
        """[N] codes of the chosen image."""
        tokens = self.candidates[self.chosen].tokens
        if tokens is None:
            raise RuntimeError(f"chosen candidate {self.chosen} has no final tokens")
        return tokens

    def to_json(self) -> dict[str, Any]:
        return {
            "slot": asdict(self.slot), "strategy": self.strategy, "chosen": self.chosen, "num_steps": self.num_steps,
            "candidates": [c.to_json() for c in self.candidates],
            "trace": [asdict(e) for e in self.trace], "cost": self.cost.as_dict(),
        }


@runtime_checkable
class Strategy(Protocol):
    """Searches one slot by driving ``pipe`` from outside; ``search_many`` searches ``slots_per_call`` slots with their
    paths decoded together, each slot's result the one ``search`` gives it alone (``scripts/run_search.py`` uses it
    where a strategy has it: every strategy of this package does)."""

    name: str

    def search(self, pipe: ImageGenerator, slot: Slot, sampling: Sampling) -> SearchResult:
        ...


def decode_images(pipe: ImageGenerator, tokens: torch.Tensor, cost: CostCounter) -> list:
    """[K, N] codes -> K PIL images through the pipeline's one decode path (batch-invariant), counted in
    ``cost.decoded_images``."""
    cost.decoded_images += tokens.shape[0]
    return pipe.decode(tokens, "pil")


def record_cots(candidates: Sequence[Candidate], cots: Mapping[int, str]) -> None:
    """Store each candidate's conditioning text (Janus-Pro's semantic CoT) in ``info["cot"]``."""
    for c in candidates:
        if c.index in cots:
            c.info["cot"] = cots[c.index]


def argmax_first(scores: Sequence[float]) -> int:
    """Index of the first maximum (ties go to the lowest index, as in :meth:`reward_models.parm.Parm.select`)."""
    if len(scores) == 0:
        raise ValueError("argmax of an empty score list")
    return int(torch.argmax(torch.as_tensor(list(scores), dtype=torch.float64)))


class ParkedPath:
    """One stopped path (:meth:`PathGroup.park`): a one-row generation state that :meth:`finish` decodes to its last
    step, drawing what the path would have drawn had it never stopped."""

    def __init__(self, pipe: ImageGenerator, state) -> None:
        if state.batch_size != 1:
            raise ValueError(f"a parked path is one row, got {state.batch_size}")
        self.pipe, self.state = pipe, state

    def finish(self) -> tuple[torch.Tensor, int]:
        """``([N] final tokens, generator forward passes the remaining steps cost)``."""
        before = self.state.forward_passes
        while not self.state.done:
            self.pipe.step(self.state)
        return self.state.final_tokens[0], self.state.forward_passes - before


class PathGroup:
    """Candidate paths of one slot decoded in lockstep, in chunks of at most ``batch_size`` rows.

    ``prompt`` is the slot's prompt, or one prompt per path (the paths of several slots decoded together,
    :meth:`search.best_of_n.BestOfN.search_many`).

    Each row has its own generator, so chunking, pruning (:meth:`keep`) and branching (:meth:`branch`) never change
    what a surviving path draws. ``forward_passes`` counts every row of every step, including stopped paths' past.
    ``cots`` maps a path to the text its image is conditioned on besides the prompt (Janus-Pro's plan; a branched
    child shares its parent's), empty for a generator that writes none.
    """

    def __init__(self, pipe: ImageGenerator, prompt: str | Sequence[str], ids: Sequence[int], seeds: Sequence[int],
                 sampling: Sampling, batch_size: int, input_ids: Optional[torch.Tensor] = None,
                 uncond_input_ids: Optional[torch.Tensor] = None) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if len(ids) != len(seeds) or not ids:
            raise ValueError(f"need one seed per path (and at least one path), got {len(ids)} ids, {len(seeds)} seeds")
        prompts = [prompt] * len(ids) if isinstance(prompt, str) else list(prompt)
        if len(prompts) != len(ids):
            raise ValueError(f"need one prompt per path, got {len(prompts)} prompts for {len(ids)} paths")
        if input_ids is not None and len(set(prompts)) > 1:
            raise ValueError("input_ids condition every path alike: give one prompt, not one per path")
        self.pipe = pipe
        self.sampling = sampling
        self.num_steps = pipe.num_steps(sampling)
        self.chunks: list[tuple[GenerationState, list[int]]] = []
        self.cots: dict[int, str] = {}
        self._retired_passes = 0
        self._passes: dict[int, int] = {}  # every path id the group has had -> its generator passes so far
        device = pipe.device
        for start in range(0, len(ids), batch_size):
            chunk_ids = list(ids[start: start + batch_size])
            gens = candidate_generators(seeds[start: start + batch_size], device)
            kwargs = {}
            if input_ids is not None:
                kwargs["input_ids"] = input_ids.expand(len(chunk_ids), -1).clone()
                if uncond_input_ids is not None:
                    kwargs["uncond_input_ids"] = uncond_input_ids.expand(len(chunk_ids), -1).clone()
            state = pipe.prepare(None if input_ids is not None else prompts[start: start + batch_size], generator=gens,
                                 **sampling, **kwargs)
            self.chunks.append((state, chunk_ids))
            if state.cots is not None:
                self.cots.update(zip(chunk_ids, state.cots))
            # each path's passes so far: its plan's tokens where the state records them (Janus-Pro's cot_passes)
            self._passes.update(zip(chunk_ids, getattr(state, "cot_passes", None) or [0] * len(chunk_ids)))
        self.step_index = 0

    @property
    def live(self) -> list[int]:
        return [i for _, ids in self.chunks for i in ids]

    @property
    def done(self) -> bool:
        return self.step_index >= self.num_steps or not self.chunks

    @property
    def forward_passes(self) -> int:
        return self._retired_passes + sum(state.forward_passes for state, _ in self.chunks)

    def path_forward_passes(self) -> dict[int, int]:
        """Path id -> the generator forward passes it has cost so far, for every path the group has had (live,
        stopped, parked or branched): the image steps it ran (``pipe.image_forward_passes``) and, when the state
        records one (Janus-Pro's ``cot_passes``), its plan's tokens (a branched child shares its parent's plan and
        counts from its branch on). They add up to :attr:`forward_passes` (checked)."""
        if sum(self._passes.values()) != self.forward_passes:
            raise RuntimeError(f"per-path generator passes add up to {sum(self._passes.values())}, the group's to "
                               f"{self.forward_passes}: a state counted passes this group does not know of")
        return dict(self._passes)

    def step(self) -> dict[int, torch.Tensor]:
        """Run one step on every live path; returns path id -> [N] predicted tokens (the model's current guess)."""
        preds: dict[int, torch.Tensor] = {}
        per_row = (self.pipe.image_forward_passes(self.sampling, self.step_index + 1)
                   - self.pipe.image_forward_passes(self.sampling, self.step_index))
        for i in self.live:
            self._passes[i] += per_row
        for state, ids in self.chunks:
            out = self.pipe.step(state)
            preds.update(zip(ids, out.sampled))
        self.step_index += 1
        return preds

    def final_tokens(self) -> dict[int, torch.Tensor]:
        if self.step_index < self.num_steps:
            raise RuntimeError(f"only {self.step_index} of {self.num_steps} steps have run")
        return {i: t for state, ids in self.chunks for i, t in zip(ids, state.final_tokens)}

    def keep(self, ids: Sequence[int]) -> None:
        """Stop every live path not in ``ids`` right now (its rows leave the batch)."""
        self.branch([(i, i, None) for i in ids])

    def park(self, ids: Sequence[int]) -> dict[int, "ParkedPath"]:
        """Stop the live paths ``ids`` like :meth:`keep` does, but hand each one back as a :class:`ParkedPath` (its row
        split off its chunk's state, with its generator) that :meth:`ParkedPath.finish` can decode to the end later:
        the same path, for only the steps it has left. A parked path keeps its row's share of the state (its KV caches
        as they were), so the group and its parked paths together never hold more than the unpruned batch would."""
        live = set(self.live)
        missing = [i for i in ids if i not in live]
        if missing:
            raise ValueError(f"cannot park paths {missing}: they are not live")
        parked = {}
        for state, chunk_ids in self.chunks:
            for i in ids:
                if i in chunk_ids:
                    parked[i] = ParkedPath(self.pipe, state.split([chunk_ids.index(i)]))
        self.keep([i for i in self.live if i not in parked])
        return parked

    def branch(self, plan: Sequence[tuple[int, int, Optional[int]]]) -> None:
        """Rebuild the live set from ``(parent, child, seed)`` triples.

        ``child == parent`` keeps the parent's row and generator (``seed`` ignored); a new child id repeats the parent's
        row with a fresh generator seeded by ``seed``, so siblings diverge from the next step on. Children stay in
        their parent's chunk.
        """
        live = set(self.live)
        missing = [p for p, _, _ in plan if p not in live]
        if missing:
            raise ValueError(f"cannot branch from paths {missing}: they are not live")
        if len({c for _, c, _ in plan}) != len(plan):
            raise ValueError(f"duplicate child ids in branch plan {plan}")
        new_chunks = []
        device = self.pipe.device
        for state, ids in self.chunks:
            local = [(ids.index(p), c, s) for p, c, s in plan if p in ids]
            if not local:
                self._retired_passes += state.forward_passes
                continue
            state.select([row for row, _, _ in local])
            gens = list(state.generator)
            for k, (row, child, seed) in enumerate(local):
                if child != ids[row]:
                    gens[k] = candidate_generators([seed], device)[0]
                    self._passes[child] = 0
                    if ids[row] in self.cots:
                        self.cots[child] = self.cots[ids[row]]
            state.generator = gens
            new_chunks.append((state, [c for _, c, _ in local]))
        self.chunks = new_chunks
