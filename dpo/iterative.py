"""Stages of iterative DPO (imagegen_cot.md §8.1): generate with the current policy -> judge -> pairs -> train.

Each round lives in ``<run_dir>/round_<r>/``::

    pool/<prompt:05d>_00.json    the prompt's N candidates as a :class:`search.pool.PoolEntry` (the project's one
                                 candidate-pool format: seeds + tokens, then the judge's ``outcome_scores`` and its
                                 yes/no decisions in ``extras["answer_yes"]``); written atomically per prompt, so a
                                 killed generation or judging resumes at the first unfinished prompt
    pairs.jsonl                  preference pairs (dpo.data format)
    train/                       the run directory of scripts/train_dpo.py (resumes from its own checkpoints)
    train/final/                 the round's policy, the next round's starting point

Stage markers and their fingerprints live in the run directory (:class:`common.stages.Stages`). Candidate ``k`` of
prompt ``i`` in round ``r`` is drawn with its own generator seeded from ``(seed, r, i, k)``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from tqdm.auto import tqdm

from common.seeding import hash_seed, seeded_generator
from search.base import Slot
from search.pool import PoolEntry, entry_path, load_entry, save_entry
from search.seeds import candidate_generators

from .data import CandidatePool, PairingPolicy, PreferencePair, save_pairs

__all__ = ["RoundDir", "build_round_pairs", "generate_pools", "judge_pools", "launcher_processes", "read_prompts"]

_PROCESS_FLAGS = ("--num_processes", "--num-processes", "--nproc_per_node", "--nproc-per-node")


def launcher_processes(launcher: Sequence[str] | None) -> int | None:
    """How many training processes a launcher command starts: 1 for none (this Python), the value of
    ``--num_processes`` / ``--nproc_per_node``, else ``num_processes`` of its ``--config_file`` (accelerate's YAML);
    ``None`` when the command does not say (e.g. accelerate's own default config)."""
    if not launcher:
        return 1
    args = [str(a) for a in launcher]
    for i, arg in enumerate(args):
        name, _, value = arg.partition("=")
        if name in _PROCESS_FLAGS:
            return int(value or args[i + 1])
    for i, arg in enumerate(args):
        name, _, value = arg.partition("=")
        if name == "--config_file":
            import yaml

            path = Path(value or args[i + 1])
            if not path.is_file():
                raise FileNotFoundError(f"launcher --config_file not found: {path}")
            return int((yaml.safe_load(path.read_text()) or {}).get("num_processes", 1))
    return None


@dataclass(frozen=True)
class RoundDir:
    """Paths of one round (its stage markers are the run's: ``round_<r>/<stage>``)."""

    root: Path

    @property
    def pool(self) -> Path:
        return self.root / "pool"

    @property
    def pairs(self) -> Path:
        return self.root / "pairs.jsonl"

    @property
    def train(self) -> Path:
        return self.root / "train"

    @property
    def final(self) -> Path:
        return self.train / "final"


def read_prompts(path: str | os.PathLike) -> list[str]:
    """One prompt per non-empty line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"prompt file {path} not found")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from err
    prompts = [line.strip() for line in text.splitlines() if line.strip()]
    if not prompts:
        raise ValueError(f"{path}: no prompts")
    return prompts


def candidate_seed(seed: int, round_index: int, prompt_index: int, k: int) -> int:
    return hash_seed(seed, "pool", round_index, prompt_index, k)


def generate_pools(pipe, prompts: Sequence[str], pool_dir: Path, sampling: dict, *, num_candidates: int,
                   batch_size: int, seed: int, round_index: int) -> None:
    """Write one :class:`PoolEntry` (seeds + tokens) per prompt not done yet."""
    todo = [i for i in range(len(prompts)) if not entry_path(pool_dir, i, 0).is_file()]
    jobs = [(i, k) for i in todo for k in range(num_candidates)]
    pending: dict[int, list[torch.Tensor]] = {}
    num_steps = pipe.num_steps(sampling)
    for start in tqdm(range(0, len(jobs), batch_size), desc=f"round {round_index}: generate", disable=not jobs):
        batch = jobs[start: start + batch_size]
        gens = candidate_generators([candidate_seed(seed, round_index, i, k) for i, k in batch], pipe.model.device)
        out = pipe([prompts[i] for i, _ in batch], generator=gens, output_type="tokens", **sampling)
        for (i, _), tokens in zip(batch, out.tokens.cpu()):
            pending.setdefault(i, []).append(tokens)
            if len(pending[i]) == num_candidates:
                seeds = [candidate_seed(seed, round_index, i, k) for k in range(num_candidates)]
                save_entry(pool_dir, PoolEntry(slot=Slot(prompts[i], i, 0, seed), num_steps=num_steps, seeds=seeds,
                                               tokens=torch.stack(pending.pop(i)), extras={"round": round_index}))


def judge_pools(judge, pipe, prompts: Sequence[str], pool_dir: Path, batch_size: int, round_index: int = 0) -> None:
    """Decode each prompt's candidates (the one decode path) and score them with an ``OutcomeJudge``; the scores and
    yes/no decisions go into the same pool entry."""
    todo = [i for i in range(len(prompts)) if load_entry(entry_path(pool_dir, i, 0)).outcome_scores is None]
    for i in tqdm(todo, desc=f"round {round_index}: judge", disable=not todo):
        entry = load_entry(entry_path(pool_dir, i, 0))
        scores, labels = [], []
        for s in range(0, entry.size, batch_size):
            chunk = entry.tokens[s: s + batch_size]
            result = judge.score([prompts[i]] * chunk.shape[0], pipe.decode(chunk, "pil"))
            scores += result.scores.tolist()
            yes = result.components.get("answer_yes")
            labels += [None] * chunk.shape[0] if yes is None else [bool(v) for v in yes.tolist()]
        entry.outcome_scores = [float(s) for s in scores]
        entry.extras["answer_yes"] = None if None in labels else labels
        save_entry(pool_dir, entry)


def build_round_pairs(prompts: Sequence[str], pool_dir: Path, policy: PairingPolicy, seed: int,
                      round_index: int) -> list[PreferencePair]:
    """Pairs from every judged pool; the pairing draw of prompt ``i`` is seeded from ``(seed, round, i)``."""
    pairs = []
    for i, prompt in enumerate(prompts):
        entry = load_entry(entry_path(pool_dir, i, 0))
        if entry.outcome_scores is None:
            raise ValueError(f"{entry_path(pool_dir, i, 0)}: not judged yet (no outcome_scores)")
        labels = entry.extras.get("answer_yes")
        pool = CandidatePool(prompt, entry.tokens, torch.tensor(entry.outcome_scores),
                             None if labels is None else torch.tensor(labels),
                             meta={"round": round_index, "prompt_index": i})
        pairs += policy(pool, seeded_generator(seed, "pairs", round_index, i))
    return pairs


def write_pairs(path: Path, pairs: Sequence[PreferencePair]) -> Path:
    if not pairs:
        raise ValueError(f"{path}: the judge labelled every candidate of every prompt the same; no pairs this round")
    return save_pairs(path, pairs)
