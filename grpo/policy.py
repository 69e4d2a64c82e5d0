"""What the GRPO recipe needs from a generator: rollouts, teacher-forced log-probs, a freeze list, an export
(t2i_r1.md §5, §15.1).

A *GRPO policy* adapts one generator (Janus-Pro: :mod:`grpo.janus_policy`; Show-o: :mod:`grpo.showo_policy`) to the
generator-agnostic loop of ``scripts/train_grpo.py``:

* ``rollout(model, prompts, generators, group_size)`` samples without gradient and returns a :class:`Samples`: the
  :class:`~grpo.rollout.Rollout` (token ids, masks, and in ``inputs`` whatever the teacher-forced passes need) and the
  decoded images the rewards score;
* ``logps(model, rollout)`` is the teacher-forced pass, with gradient: modality -> ``[B, L_k]`` per-token log-probs;
* ``masks(rollout)``: modality -> ``[B, L_k]`` float mask of the tokens the loss counts;
* ``modalities``: which of ``"text"`` / ``"image"`` are trained (BiCoT: both; token-only: image; semantic-only: text);
* ``frozen`` (parameter-name prefixes kept fixed) and ``export(state_dict, directory)`` (a loadable checkpoint).

Distributed data parallelism only synchronises gradients of work done inside the wrapped module's ``forward`` (DDP's
reducer is armed there; FSDP gathers shards there), so the teacher-forced pass runs through :class:`LogProbModule`,
an ``nn.Module`` whose ``forward`` calls ``policy.logps``: that module is what ``accelerator.prepare`` wraps.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
from PIL import Image
from torch import nn

from grpo.rollout import Rollout

__all__ = ["GRPOPolicy", "LogProbModule", "Samples", "freeze", "pad_to", "trim_left"]


@dataclass
class Samples:
    """One rollout and its images (``images[i]`` is row ``i``); ``forward_passes``: generator forwards per image
    (CoT tokens + image codes); ``texts``: the decoded CoTs, when there are any."""

    rollout: Rollout
    images: list[Image.Image]
    forward_passes: float = 0.0
    texts: list[str] | None = None


class GRPOPolicy(Protocol):
    modalities: tuple[str, ...]
    frozen: tuple[str, ...]

    def rollout(self, model: nn.Module, prompts: Sequence[str], generators: Sequence[torch.Generator],
                group_size: int) -> Samples:
        """``B`` rows (each prompt repeated ``group_size`` times on consecutive rows), one generator per row."""
        ...

    def logps(self, model: nn.Module, rollout: Rollout) -> dict[str, torch.Tensor]:
        """modality -> ``[B, L_k]`` teacher-forced log-probs (with gradient when enabled)."""
        ...

    def masks(self, rollout: Rollout) -> dict[str, torch.Tensor]:
        """modality -> ``[B, L_k]`` float mask of counted tokens."""
        ...

    def export(self, state_dict: dict[str, torch.Tensor], directory) -> None:
        """Write the trained weights as a checkpoint the generator's loader reads."""
        ...


class LogProbModule(nn.Module):
    """``forward(rollout) -> policy.logps(model, rollout)``: the module DDP / FSDP / DeepSpeed wrap.

    The policy is kept out of the module tree (it is not an ``nn.Module``), so the state dict is the model's own with
    the prefix ``model.``.
    """

    def __init__(self, model: nn.Module, policy: GRPOPolicy) -> None:
        super().__init__()
        self.model = model
        self._policy = policy

    def forward(self, rollout: Rollout) -> dict[str, torch.Tensor]:
        return self._policy.logps(self.model, rollout)


def freeze(model: nn.Module, prefixes: Sequence[str]) -> list[str]:
    """``requires_grad_(False)`` on every parameter whose name starts with one of ``prefixes``; returns the names
    still trainable. A prefix that matches no parameter is an error (a typo would silently train a frozen part)."""
    names = [name for name, _ in model.named_parameters()]
    unused = [p for p in prefixes if not any(n.startswith(p) for n in names)]
    if unused:
        raise ValueError(f"freeze prefixes {unused} match no parameter of {type(model).__name__} "
                         f"(names look like {names[:3]})")
    trainable = []
    for name, param in model.named_parameters():
        if any(name.startswith(p) for p in prefixes):
            param.requires_grad_(False)
        elif param.requires_grad:
            trainable.append(name)
    if not trainable:
        raise ValueError(f"freeze prefixes {list(prefixes)} leave nothing to train")
    return trainable


def trim_left(ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Drop the leading columns that are padding in every row of left-padded ``[B, L]`` ids / mask.

    A micro-batch selected from a bigger rollout keeps the rollout's padding width; trimming makes its tensors those
    of the same rows rolled out alone, so results do not depend on which other rows shared the rollout.
    """
    real = mask.bool().any(dim=0)
    if not bool(real.any()):
        raise ValueError("every row is padding")
    first = int(real.int().argmax())
    return ids[:, first:], mask[:, first:]


def pad_to(values: torch.Tensor, length: int, value: float | int = 0) -> torch.Tensor:
    """Right-pad ``[B, L]`` to ``[B, length]`` with ``value``."""
    if values.shape[1] > length:
        raise ValueError(f"cannot pad {tuple(values.shape)} to length {length}")
    return torch.nn.functional.pad(values, (0, length - values.shape[1]), value=value)
