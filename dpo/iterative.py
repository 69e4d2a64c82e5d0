"""Stages of iterative DPO (imagegen_cot.md §8.1): generate with the current policy -> judge -> pairs -> train.

Each round lives in ``<run_dir>/round_<r>/``::

    pools/<prompt>.safetensors   N candidate token grids per prompt ([N, n_tokens]); one file per prompt, written
                                 atomically, so a killed generation resumes at the first missing prompt
    scores/<prompt>.json         the judge's scores (and yes/no labels) of that prompt's candidates
    pairs.jsonl                  preference pairs (dpo.data format)
    train/                       the run directory of scripts/train_dpo.py (resumes from its own checkpoints)
    train/final/                 the round's policy, the next round's starting point
    <stage>.done                 written last by each stage; a finished stage is skipped on restart

Candidate ``k`` of prompt ``i`` in round ``r`` is drawn with its own generator seeded from ``(seed, r, i, k)``.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from showo.checkpoint import atomic_write_text
from showo.seeding import seeded_generator
from showo.pipeline import ShowoPipeline

from .data import CandidatePool, PairingPolicy, PreferencePair, save_pairs

__all__ = ["RoundDir", "build_round_pairs", "generate_pools", "judge_pools", "read_prompts"]

STAGES = ("generate", "judge", "pairs", "train")


@dataclass(frozen=True)
class RoundDir:
    root: Path

    @property
    def pools(self) -> Path:
        return self.root / "pools"

    @property
    def scores(self) -> Path:
        return self.root / "scores"

    @property
    def pairs(self) -> Path:
        return self.root / "pairs.jsonl"

    @property
    def train(self) -> Path:
        return self.root / "train"

    @property
    def final(self) -> Path:
        return self.train / "final"

    def done(self, stage: str) -> bool:
        return (self.root / f"{stage}.done").is_file()

    def mark_done(self, stage: str, info: Optional[dict] = None) -> None:
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}; stages are {STAGES}")
        atomic_write_text(self.root / f"{stage}.done", json.dumps(info or {}))


def read_prompts(path: str | os.PathLike) -> list[str]:
    """One prompt per non-empty line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"prompt file {path} not found")
    prompts = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not prompts:
        raise ValueError(f"{path}: no prompts")
    return prompts


def _name(i: int) -> str:
    return f"{i:05d}"


def generate_pools(pipe: ShowoPipeline, prompts: Sequence[str], out_dir: Path, *, num_candidates: int,
                   batch_size: int, seed: int, round_index: int, guidance_scale: float, num_inference_steps: int) -> None:
    """Write ``out_dir/<i>.safetensors`` ({"tokens": [N, n_tokens]}) for every prompt not done yet."""
    out_dir.mkdir(parents=True, exist_ok=True)
    todo = [i for i in range(len(prompts)) if not (out_dir / f"{_name(i)}.safetensors").is_file()]
    jobs = [(i, k) for i in todo for k in range(num_candidates)]
    pending: dict[int, list[torch.Tensor]] = {}
    for start in tqdm(range(0, len(jobs), batch_size), desc=f"round {round_index}: generate", disable=not jobs):
        batch = jobs[start: start + batch_size]
        gens = [seeded_generator(seed, "pool", round_index, i, k, device=pipe.model.device) for i, k in batch]
        out = pipe([prompts[i] for i, _ in batch], guidance_scale=guidance_scale, num_inference_steps=num_inference_steps,
                   generator=gens, output_type="tokens")
        for (i, _), tokens in zip(batch, out.tokens.cpu()):
            pending.setdefault(i, []).append(tokens)
            if len(pending[i]) == num_candidates:
                path = out_dir / f"{_name(i)}.safetensors"
                tmp = path.with_name(path.name + ".tmp")
                save_file({"tokens": torch.stack(pending.pop(i)).contiguous()}, str(tmp))
                os.replace(tmp, path)


def judge_pools(judge, pipe: ShowoPipeline, prompts: Sequence[str], pools_dir: Path, out_dir: Path,
                batch_size: int, round_index: int = 0) -> None:
    """Decode each prompt's candidates and score them with an ``OutcomeJudge``: ``out_dir/<i>.json``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    todo = [i for i in range(len(prompts)) if not (out_dir / f"{_name(i)}.json").is_file()]
    for i in tqdm(todo, desc=f"round {round_index}: judge", disable=not todo):
        tokens = load_file(str(pools_dir / f"{_name(i)}.safetensors"))["tokens"]
        scores, labels = [], []
        for s in range(0, tokens.shape[0], batch_size):
            chunk = tokens[s: s + batch_size]
            result = judge.score([prompts[i]] * chunk.shape[0], pipe.decode(chunk, "pil"))
            scores += result.scores.tolist()
            yes = result.components.get("answer_yes")
            labels += [None] * chunk.shape[0] if yes is None else [bool(v) for v in yes.tolist()]
        atomic_write_text(out_dir / f"{_name(i)}.json", json.dumps({"prompt": prompts[i], "scores": scores, "labels": labels}))


def build_round_pairs(prompts: Sequence[str], pools_dir: Path, scores_dir: Path, policy: PairingPolicy,
                      seed: int, round_index: int) -> list[PreferencePair]:
    """Pairs from every judged pool; the pairing draw of prompt ``i`` is seeded from ``(seed, round, i)``."""
    pairs = []
    for i, prompt in enumerate(prompts):
        tokens = load_file(str(pools_dir / f"{_name(i)}.safetensors"))["tokens"]
        judged = json.loads((scores_dir / f"{_name(i)}.json").read_text())
        labels = None if None in judged["labels"] else torch.tensor(judged["labels"])
        pool = CandidatePool(prompt, tokens, torch.tensor(judged["scores"]), labels,
                             meta={"round": round_index, "prompt_index": i})
        pairs += policy(pool, seeded_generator(seed, "pairs", round_index, i))
    return pairs


def write_pairs(path: Path, pairs: Sequence[PreferencePair]) -> Path:
    if not pairs:
        raise ValueError(f"{path}: the judge labelled every candidate of every prompt the same; no pairs this round")
    return save_pairs(path, pairs)
