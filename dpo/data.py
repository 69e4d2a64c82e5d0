"""Preference pairs: built from judged candidate pools, stored as JSONL with the image tokens (imagegen_cot.md §8.1–8.2).

One line per pair::

    {"prompt": "a photo of a cat", "chosen": [17, 3, ...], "rejected": [5, 60, ...],
     "chosen_score": 0.93, "rejected_score": 0.12, "meta": {...}}

``chosen``/``rejected`` are the ``layout.num_image_tokens`` VQ codes of each image (code space). Storing tokens rather
than PNGs skips re-encoding (the official recipe VQ-encodes its PNG pairs every epoch) and makes the data exact.

Pairing policies (callables ``policy(pool, generator) -> list[PreferencePair]``, selected in Hydra with ``_target_``):

* :class:`YesNoPairing` (paper §8.1): one random "yes" image vs one random "no" image; prompts whose images all got
  the same label are dropped;
* :class:`BestWorstPairing`: highest vs lowest score, kept only when the score margin is at least ``min_margin``.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional, Protocol, Sequence

import torch

from common.io import atomic_write_text
from showo.tokens import TokenLayout

__all__ = [
    "BestWorstPairing", "CandidatePool", "PairingPolicy", "PreferencePair", "YesNoPairing", "epoch_order", "load_pairs",
    "accumulation", "pairs_hash", "save_pairs", "shard_batches",
]


@dataclass
class PreferencePair:
    prompt: str
    chosen: list[int]
    rejected: list[int]
    chosen_score: Optional[float] = None
    rejected_score: Optional[float] = None
    meta: dict = field(default_factory=dict)

    @property
    def margin(self) -> Optional[float]:
        if self.chosen_score is None or self.rejected_score is None:
            return None
        return self.chosen_score - self.rejected_score


@dataclass
class CandidatePool:
    """N judged candidates of one prompt: ``tokens`` [N, n_tokens] codes, ``scores`` [N], optional ``labels`` [N] bool
    (the judge's yes/no decisions; default ``scores >= threshold`` in :class:`YesNoPairing`)."""

    prompt: str
    tokens: torch.Tensor
    scores: torch.Tensor
    labels: Optional[torch.Tensor] = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = self.tokens.shape[0]
        if self.tokens.dim() != 2 or self.scores.shape != (n,):
            raise ValueError(f"pool {self.prompt!r}: tokens must be [N, n_tokens] and scores [N], got "
                             f"{tuple(self.tokens.shape)} and {tuple(self.scores.shape)}")
        if self.labels is not None and self.labels.shape != (n,):
            raise ValueError(f"pool {self.prompt!r}: labels must be [{n}], got {tuple(self.labels.shape)}")

    def pair(self, chosen: int, rejected: int) -> PreferencePair:
        return PreferencePair(self.prompt, self.tokens[chosen].tolist(), self.tokens[rejected].tolist(),
                              float(self.scores[chosen]), float(self.scores[rejected]),
                              {**self.meta, "chosen_index": chosen, "rejected_index": rejected})


class PairingPolicy(Protocol):
    def __call__(self, pool: CandidatePool, generator: torch.Generator) -> list[PreferencePair]:
        ...


@dataclass(frozen=True)
class YesNoPairing:
    """Paper §8.1: ``pairs_per_prompt`` random (yes, no) pairs without reuse; all-yes or all-no prompts give none.

    Labels come from ``pool.labels`` when the judge decided them, else ``score >= threshold`` (P("yes") >= 0.5).
    ``reuse=True`` draws from every (yes, no) combination instead (an image may be in several pairs, no pair twice),
    still at most ``pairs_per_prompt``: a prompt with 2 "yes" and 14 "no" images gives up to 28 pairs, not 2.
    """

    threshold: float = 0.5
    pairs_per_prompt: int = 1
    reuse: bool = False

    def __post_init__(self) -> None:
        if self.pairs_per_prompt < 1:
            raise ValueError(f"pairing.pairs_per_prompt must be >= 1, got {self.pairs_per_prompt}")

    def __call__(self, pool: CandidatePool, generator: torch.Generator) -> list[PreferencePair]:
        labels = pool.labels.bool() if pool.labels is not None else pool.scores >= self.threshold
        yes = torch.nonzero(labels).flatten()
        no = torch.nonzero(~labels).flatten()
        if self.reuse:
            combos = [(int(c), int(r)) for c in yes for r in no]
            order = torch.randperm(len(combos), generator=generator)[: self.pairs_per_prompt].tolist()
            return [pool.pair(*combos[j]) for j in order]
        k = min(self.pairs_per_prompt, len(yes), len(no))
        yes = yes[torch.randperm(len(yes), generator=generator)][:k]
        no = no[torch.randperm(len(no), generator=generator)][:k]
        return [pool.pair(int(c), int(r)) for c, r in zip(yes, no)]


@dataclass(frozen=True)
class BestWorstPairing:
    """Highest- vs lowest-scoring candidate, kept when ``score(best) - score(worst) >= min_margin`` (ties: lowest index)."""

    min_margin: float = 0.0

    def __call__(self, pool: CandidatePool, generator: torch.Generator) -> list[PreferencePair]:
        best, worst = int(pool.scores.argmax()), int(pool.scores.argmin())
        if best == worst or float(pool.scores[best] - pool.scores[worst]) < max(self.min_margin, 1e-12):
            return []
        return [pool.pair(best, worst)]


# ------------------------------------------------------------------------------------------------------------ JSONL I/O
def save_pairs(path: str | os.PathLike, pairs: Sequence[PreferencePair]) -> Path:
    """Write pairs as JSONL atomically (tmp file + ``os.replace``)."""
    return atomic_write_text(path, "".join(json.dumps(asdict(p)) + "\n" for p in pairs))


def _check_tokens(value, name: str, where: str, layout: TokenLayout) -> list[int]:
    if not isinstance(value, list) or not all(isinstance(t, int) and not isinstance(t, bool) for t in value):
        raise ValueError(f"{where}: field {name!r} must be a list of integer image codes")
    if len(value) != layout.num_image_tokens:
        raise ValueError(f"{where}: field {name!r} has {len(value)} tokens, the model expects {layout.num_image_tokens}")
    bad = [t for t in value if not 0 <= t < layout.codebook_size]
    if bad:
        raise ValueError(f"{where}: field {name!r} holds codes {bad[:5]} outside [0, {layout.codebook_size})")
    return value


def _parse_pair(line: str, where: str, layout: TokenLayout) -> PreferencePair:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as err:
        raise ValueError(f"{where}: not valid JSON ({err.msg} at column {err.colno})") from err
    if not isinstance(row, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(row).__name__}")
    missing = [k for k in ("prompt", "chosen", "rejected") if k not in row]
    if missing:
        raise ValueError(f"{where}: missing field(s) {missing}")
    unknown = set(row) - {"prompt", "chosen", "rejected", "chosen_score", "rejected_score", "meta"}
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {sorted(unknown)}")
    if not isinstance(row["prompt"], str):
        raise ValueError(f"{where}: field 'prompt' must be a string, got {type(row['prompt']).__name__}")
    for key in ("chosen_score", "rejected_score"):
        v = row.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
            raise ValueError(f"{where}: field {key!r} must be a number or null, got {v!r}")
    return PreferencePair(
        prompt=row["prompt"],
        chosen=_check_tokens(row["chosen"], "chosen", where, layout),
        rejected=_check_tokens(row["rejected"], "rejected", where, layout),
        chosen_score=row.get("chosen_score"),
        rejected_score=row.get("rejected_score"),
        meta=row.get("meta") or {},
    )


def load_pairs(path: str | os.PathLike, layout: TokenLayout) -> list[PreferencePair]:
    """Read and validate a pairs JSONL; every error names the file, the line, the field and the value."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"preference pairs file {path} not found")
    pairs = []
    for number, raw in enumerate(path.read_bytes().splitlines(), start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise ValueError(f"{path}:{number}: not UTF-8 text ({err.reason} at byte {err.start})") from err
        if line.strip():
            pairs.append(_parse_pair(line, f"{path}:{number}", layout))
    if not pairs:
        raise ValueError(f"{path}: no preference pairs")
    return pairs


def pairs_hash(pairs: Sequence[PreferencePair]) -> str:
    """Content hash of (prompt, chosen, rejected) in order: keys the precomputed-reference cache."""
    h = hashlib.sha256()
    for p in pairs:
        h.update(json.dumps([p.prompt, p.chosen, p.rejected]).encode())
    return h.hexdigest()[:16]


# ------------------------------------------------------------------------------------------------------------ batching
def epoch_order(num_pairs: int, epoch: int, seed: int, shuffle: bool = True) -> list[int]:
    """The pair order of one epoch (the same on every process: a function of ``(seed, epoch)`` only)."""
    if not shuffle:
        return list(range(num_pairs))
    return torch.randperm(num_pairs, generator=torch.Generator().manual_seed(seed * 100003 + epoch)).tolist()


def accumulation(global_batch: int, per_device: int | None, world: int) -> tuple[int, int]:
    """``(per-device batch, accumulation steps)`` with ``world x per-device x accumulation == global_batch``.

    ``per_device=None`` takes ``global_batch / world`` (no accumulation). A split that is not whole, e.g. the paper's
    10 pairs over 8 processes, is a :class:`~common.validate.ConfigError` naming the process counts that divide it.
    """
    from common.validate import ConfigError

    per_device = per_device or global_batch // world
    if per_device < 1 or global_batch % (world * per_device):
        divisors = [n for n in range(1, global_batch + 1) if global_batch % n == 0]
        raise ConfigError(f"train.global_batch_size = {global_batch} is not a multiple of {world} process(es) x "
                          f"train.per_device_batch_size = {per_device}: launch a process count that divides it "
                          f"({divisors}) or set train.per_device_batch_size")
    return per_device, global_batch // (world * per_device)


def shard_batches(order: Sequence[int], *, rank: int, world_size: int, per_device_batch_size: int,
                  gradient_accumulation_steps: int) -> list[list[list[int]]]:
    """Indices for this process: ``[optimizer_step][micro_step] -> pair indices`` (disjoint across ranks).

    One optimizer step consumes ``G = world_size * per_device_batch_size * accumulation`` consecutive pairs of
    ``order``; micro-step ``m`` of rank ``r`` takes the ``(m * world_size + r)``-th block of ``per_device_batch_size``.
    So 1 x 4 accumulation on one process and a batch of 4 see the same pairs per update. The last ``len(order) % G``
    pairs of an epoch are dropped (every rank must run the same number of steps).
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is outside [0, {world_size})")
    b, acc = per_device_batch_size, gradient_accumulation_steps
    g = world_size * b * acc
    steps = []
    for s in range(len(order) // g):
        block = order[s * g: (s + 1) * g]
        steps.append([list(block[(m * world_size + rank) * b: (m * world_size + rank + 1) * b]) for m in range(acc)])
    return steps
