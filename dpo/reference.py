"""The reference policy of DPO: a frozen copy, precomputed log-probs cached on disk, or none (imagegen_cot.md §8.4).

* :func:`frozen` (official): a deep copy of the initial policy, eval mode, float32, no grad, never wrapped by
  accelerate; it runs on every batch (one extra forward per step).
* :func:`precomputed`: ``ell_ref`` of every pair and epoch is computed once before training (with the masks the
  policy will see, see :mod:`dpo.batch`) and cached as ``reference_cache/ref-<data>-<model>-<masking>.safetensors``,
  keyed by the hashes of the pairs, of the reference weights and of the masking settings. Training then needs no
  second model in memory. Equal to :func:`frozen` up to float summation order.
* :func:`no_reference`: the reference-free objective, chosen explicitly (``reference: none``).

Each factory is selected in Hydra with ``_target_`` and ``_partial_: true`` and called as ``factory(model, context)``.
"""
from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional, Protocol, Sequence

import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from common.io import atomic_write
from showo.logprob import MaskedBatch, MaskingConfig
from showo.tokens import TokenLayout

from .batch import PairBatch, collate_pairs, mask_pairs, pair_logprobs
from .data import PreferencePair, pairs_hash

__all__ = ["FrozenReference", "PrecomputedReference", "ReferenceContext", "ReferencePolicy", "frozen", "model_hash",
           "no_reference", "precompute_table", "precomputed"]


class ReferencePolicy(Protocol):
    def logprobs(self, batch: PairBatch, masked: MaskedBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """``(ell_ref(chosen) [B], ell_ref(rejected) [B])`` for the pairs of ``batch`` under the masks ``masked``."""
        ...


@dataclass
class ReferenceContext:
    """What a reference factory may need; built by the recipe."""

    layout: TokenLayout
    pairs: Sequence[PreferencePair]
    prompt_ids: Sequence[Sequence[int]]
    masking: MaskingConfig
    seed: int
    epochs: int
    device: torch.device = torch.device("cpu")
    is_main_process: bool = True
    wait_for_everyone: Callable[[], None] = lambda: None
    run_dir: Optional[Path] = None


def model_hash(model: torch.nn.Module) -> str:
    """sha256 over parameter names, dtypes, shapes and bytes (16 hex digits)."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


class FrozenReference:
    """A frozen float32 copy of the initial policy."""

    def __init__(self, model: torch.nn.Module, layout: TokenLayout, device: Optional[torch.device] = None) -> None:
        self.model = copy.deepcopy(model).float().eval().requires_grad_(False)
        if device is not None:
            self.model.to(device)
        self.layout = layout

    @torch.no_grad()
    def logprobs(self, batch: PairBatch, masked: MaskedBatch) -> tuple[torch.Tensor, torch.Tensor]:
        return pair_logprobs(self.model, masked, self.layout, self.model.device)


class PrecomputedReference:
    """Looks up ``ell_ref`` in a table [epochs, num_pairs, 2] (last axis: chosen, rejected)."""

    def __init__(self, table: torch.Tensor, source: str = "<memory>") -> None:
        if table.dim() != 3 or table.shape[-1] != 2:
            raise ValueError(f"{source}: reference table must be [epochs, pairs, 2], got {tuple(table.shape)}")
        self.table = table.float()
        self.source = source

    def logprobs(self, batch: PairBatch, masked: MaskedBatch) -> tuple[torch.Tensor, torch.Tensor]:
        if batch.epoch >= self.table.shape[0] or max(batch.indices) >= self.table.shape[1]:
            raise IndexError(f"{self.source}: no cached reference for epoch {batch.epoch}, pairs {batch.indices}")
        rows = self.table[batch.epoch, torch.as_tensor(batch.indices)]
        return rows[:, 0], rows[:, 1]


@torch.no_grad()
def precompute_table(model: torch.nn.Module, ctx: ReferenceContext, batch_size: int = 8) -> torch.Tensor:
    """``ell_ref`` for every (epoch, pair): [epochs, num_pairs, 2], with the masks training will draw."""
    was_training = model.training
    model.eval()
    n = len(ctx.pairs)
    table = torch.empty(ctx.epochs, n, 2)
    todo = [(e, list(range(s, min(s + batch_size, n)))) for e in range(ctx.epochs) for s in range(0, n, batch_size)]
    for epoch, idx in tqdm(todo, desc="reference log-probs", disable=not ctx.is_main_process):
        batch = collate_pairs(ctx.pairs, ctx.prompt_ids, idx, epoch)
        chosen, rejected = pair_logprobs(model, mask_pairs(batch, ctx.layout, ctx.masking, ctx.seed), ctx.layout, ctx.device)
        table[epoch, idx] = torch.stack([chosen, rejected], -1).float().cpu()
    model.train(was_training)
    return table


def _masking_key(ctx: ReferenceContext) -> str:
    blob = json.dumps({"masking": asdict(ctx.masking), "seed": ctx.seed, "layout": ctx.layout.to_config()}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


# --------------------------------------------------------------------------------------------- Hydra factories
def frozen(model: torch.nn.Module, ctx: ReferenceContext, source=None) -> FrozenReference:
    """Frozen copy of the initial policy, or of ``source`` (a ``ShowoBundle``, e.g. the base model in a later round
    of iterative DPO; its layout must be the policy's)."""
    return FrozenReference(_reference_model(model, ctx, source), ctx.layout, ctx.device)


def _reference_model(model: torch.nn.Module, ctx: ReferenceContext, source) -> torch.nn.Module:
    if source is None:
        return model
    if source.layout != ctx.layout:
        raise ValueError(f"dpo.reference.source has layout {source.layout}, the policy has {ctx.layout}")
    return source.model


def no_reference(model: torch.nn.Module, ctx: ReferenceContext) -> None:
    """The reference-free objective (explicit choice; the loss is told ``reference_free=True``)."""
    return None


def precomputed(model: torch.nn.Module, ctx: ReferenceContext, cache_dir: Optional[str] = None,
                batch_size: int = 8, source=None) -> PrecomputedReference:
    """Load the cached table for (pairs, weights, masking) or compute it on the main process and save it atomically.

    ``source``: as in :func:`frozen`. The table is computed on ``ctx.device`` and the model is left where it was.
    """
    model = _reference_model(model, ctx, source)
    root = Path(cache_dir) if cache_dir else (ctx.run_dir or Path(".")) / "reference_cache"
    key = f"ref-{pairs_hash(ctx.pairs)}-{model_hash(model)}-{_masking_key(ctx)}"
    path = root / f"{key}.safetensors"
    if ctx.is_main_process and not _has_epochs(path, ctx.epochs):
        home = next(model.parameters()).device
        table = precompute_table(model.to(ctx.device), ctx, batch_size)
        model.to(home)
        atomic_write(path, lambda tmp: save_file({"logprobs": table.contiguous()}, tmp,
                                                 metadata={"key": key, "epochs": str(ctx.epochs)}))
    ctx.wait_for_everyone()
    if not path.is_file():
        raise FileNotFoundError(f"reference cache {path} was not written by the main process")
    return PrecomputedReference(load_file(str(path))["logprobs"], source=str(path))


def _has_epochs(path: Path, epochs: int) -> bool:
    if not path.is_file():
        return False
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return int(f.metadata().get("epochs", 0)) >= epochs
