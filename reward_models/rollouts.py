"""Show-o sampling paths with roll-out labels of their steps (imagegen_cot.md §5, §6.4; Math-Shepherd style).

The paper labels an intermediate step of a Show-o path by what can still come of it: "condition Show-o on the step-i
image, roll out 4 completions for the remaining steps, and label step i 'yes' if **any** final image is judged
'yes'". :func:`sample_paths` drives the pipeline from outside (``pipe.prepare`` / ``pipe.step``, STYLE.md point 2):
after step ``s`` of a path that asks for roll-outs at ``s``, the sampling state is forked (:func:`fork_state`), the
path's row repeated ``rollouts`` times, each copy with a **fresh** generator, and the copies run to the last step;
their final images are decoded and judged by the injected ``labeller``. The path itself continues with its own
generator, so roll-outs never change the path (a path with roll-outs ends exactly as one without).

Seeds: path ``(i, k)`` is drawn from ``seed_of(i, k)`` and roll-out ``r`` of its step ``s`` from
``rollout_seed(seed, i, k, s, r)``, one generator per row, so nothing depends on the batch composition.
"""
from __future__ import annotations

import copy
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from PIL import Image

from common.io import atomic_write
from common.seeding import generators, hash_seed
from showo.pipeline import SamplingState, ShowoPipeline

__all__ = ["Labeller", "Outcome", "PathSample", "StepLabel", "fork_state", "load_paths", "rollout_seed", "sample_paths",
           "save_paths"]


class Labeller(Protocol):
    """The exact judge of the world (e.g. ``eval.shapes.oracle.ShapesLabeller``): ``(metadata line, image)`` -> a
    verdict with ``correct`` and ``reason`` (``reward_models.data.Verdict``)."""

    def __call__(self, line: dict, image: Image.Image) -> Any:
        ...


@dataclass
class Outcome:
    """A finished image: codes ``[N]``, the decoded image and its verdict."""

    tokens: torch.Tensor
    image: Image.Image
    verdict: Any


@dataclass
class PathSample:
    """One Show-o path of line ``line`` (path ``index``): its final outcome, the decoded predicted images of the
    steps it was asked to keep (0-based step -> image) and the roll-out outcomes of its roll-out steps."""

    line: int
    index: int
    seed: int
    final: Outcome
    step_images: dict[int, Image.Image] = field(default_factory=dict)
    rollouts: dict[int, list[Outcome]] = field(default_factory=dict)
    step_tokens: dict[int, torch.Tensor] = field(default_factory=dict)  # 0-based step -> [N] predicted codes

    def rollout_label(self, step: int) -> bool:
        """The paper's step label: True iff any roll-out from ``step`` ends accepted."""
        return any(o.verdict.correct for o in self.rollouts[step])


@dataclass(frozen=True)
class StepLabel:
    """A verdict-like label (``reward_models.data.Verdict``) of a roll-out labelled step: "any roll-out accepted"."""

    correct: bool
    reason: str = ""


def rollout_seed(seed: int, line: int, index: int, step: int, rollout: int) -> int:
    """Seed of roll-out ``rollout`` from 0-based ``step`` of path ``(line, index)``."""
    return hash_seed("rollout", seed, line, index, step, rollout)


def fork_state(state: SamplingState, rows: Sequence[int], gens: Sequence[torch.Generator]) -> SamplingState:
    """An independent copy of ``state`` holding ``rows`` (repeats allowed), each with its generator from ``gens``.

    ``SamplingState.select`` rebinds every per-row tensor (indexing copies), so selecting on a shallow copy leaves the
    original state untouched; the trajectory is not copied.
    """
    if len(rows) != len(gens):
        raise ValueError(f"fork_state: {len(rows)} rows but {len(gens)} generators")
    fork = copy.copy(state)
    fork.trajectory = None
    fork.select(list(rows))
    fork.generator = list(gens)
    return fork


def _finish(pipe: ShowoPipeline, state: SamplingState) -> torch.Tensor:
    while not state.done:
        pipe.step(state)
    return state.final_tokens


def _outcomes(pipe: ShowoPipeline, tokens: torch.Tensor, lines: Sequence[dict], labeller: Labeller) -> list[Outcome]:
    images = pipe.decode(tokens)
    return [Outcome(t.cpu(), im, labeller(line, im)) for t, im, line in zip(tokens, images, lines)]


@torch.no_grad()
def _run_batch(pipe: ShowoPipeline, lines: Sequence[dict], batch: Sequence[tuple[int, int]], seeds: Sequence[int], *,
               labeller: Labeller, guidance_scale: float, num_steps: int, keep: Callable[[int, int], set[int]],
               rollout_steps: Callable[[int, int], set[int]], rollouts: int, seed: int) -> list[PathSample]:
    device = pipe.model.device
    state = pipe.prepare([lines[i]["prompt"] for i, _ in batch], guidance_scale=guidance_scale,
                         num_inference_steps=num_steps, generator=generators(seeds, device))
    samples = [PathSample(i, k, s, final=None) for (i, k), s in zip(batch, seeds)]  # final set below
    while not state.done:
        out = pipe.step(state)
        step = state.step_index - 1
        rows = [r for r, (i, k) in enumerate(batch) if step in keep(i, k)]
        if rows:
            for r, image in zip(rows, pipe.decode(out.sampled[rows])):
                samples[r].step_images[step] = image
                samples[r].step_tokens[step] = out.sampled[r].cpu()
        rows = [r for r, (i, k) in enumerate(batch) if step in rollout_steps(i, k) and step < num_steps - 1]
        if rows and rollouts > 0:
            plan = [(r, j) for r in rows for j in range(rollouts)]
            gens = generators([rollout_seed(seed, *batch[r], step, j) for r, j in plan], device)
            finals = _finish(pipe, fork_state(state, [r for r, _ in plan], gens))
            outcomes = _outcomes(pipe, finals, [lines[batch[r][0]] for r, _ in plan], labeller)
            for n, (r, _) in enumerate(plan):
                samples[r].rollouts.setdefault(step, []).append(outcomes[n])
    finals = _outcomes(pipe, state.final_tokens, [lines[i] for i, _ in batch], labeller)
    for sample, final in zip(samples, finals):
        sample.final = final
    return samples


def sample_paths(pipe: ShowoPipeline, lines: Sequence[dict], jobs: Sequence[tuple[int, int]],
                 seed_of: Callable[[int, int], int], *, labeller: Labeller, guidance_scale: float, num_steps: int,
                 keep: Callable[[int, int], set[int]] = lambda i, k: set(),
                 rollout_steps: Callable[[int, int], set[int]] = lambda i, k: set(), rollouts: int = 4,
                 seed: int = 0, batch_size: int = 16) -> Iterator[PathSample]:
    """Run the paths ``jobs`` = ``(line index, path index)`` in batches of ``batch_size`` and yield one
    :class:`PathSample` per job, in order.

    ``keep(i, k)`` names the 0-based steps whose predicted image is decoded into ``step_images``;
    ``rollout_steps(i, k)`` the steps rolled out ``rollouts`` times (the last step never is: its roll-out would be
    the path itself). Forked roll-outs are ``rollouts x`` the rows of the batch, so keep ``batch_size`` moderate.
    """
    for start in range(0, len(jobs), batch_size):
        batch = list(jobs[start: start + batch_size])
        yield from _run_batch(pipe, lines, batch, [seed_of(i, k) for i, k in batch], labeller=labeller,
                              guidance_scale=guidance_scale, num_steps=num_steps, keep=keep,
                              rollout_steps=rollout_steps, rollouts=rollouts, seed=seed)


def save_paths(samples: Sequence[PathSample], path: str | os.PathLike, meta: dict) -> None:
    """Store paths as codes (final, kept steps, roll-outs) + ``meta`` (what they were sampled with), atomically:
    :func:`load_paths` rebuilds them without sampling again (images are decoded and judged anew)."""
    records = [{"line": p.line, "index": p.index, "seed": p.seed, "final": p.final.tokens,
                "steps": {int(s): t for s, t in p.step_tokens.items()},
                "rollouts": {int(s): torch.stack([o.tokens for o in outs]) for s, outs in p.rollouts.items()}}
               for p in samples]
    atomic_write(path, lambda tmp: torch.save({"meta": meta, "paths": records}, tmp))


def load_paths(path: str | os.PathLike, meta: dict, pipe: ShowoPipeline, lines: Sequence[dict],
               labeller: Labeller) -> list[PathSample] | None:
    """The paths stored by :func:`save_paths` if their ``meta`` equals ``meta`` (else ``None``: sample again)."""
    path = Path(path)
    if not path.is_file():
        return None
    stored = torch.load(path, weights_only=True)
    if stored["meta"] != meta:
        return None
    samples = []
    for rec in stored["paths"]:
        line = lines[rec["line"]]
        final = _outcomes(pipe, rec["final"][None], [line], labeller)[0]
        sample = PathSample(rec["line"], rec["index"], rec["seed"], final)
        for step, tokens in rec["steps"].items():
            sample.step_tokens[step] = tokens
            sample.step_images[step] = pipe.decode(tokens[None])[0]
        for step, tokens in rec["rollouts"].items():
            sample.rollouts[step] = _outcomes(pipe, tokens, [line] * len(tokens), labeller)
        samples.append(sample)
    return samples
