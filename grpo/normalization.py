"""How per-token losses become one scalar: the loss normalisation, a named choice (t2i_r1.md §6.1 step 6, §15.2.2).

Per-token values arrive per modality, ``values[k]`` and ``masks[k]`` of shape ``[B, L_k]`` (``k`` = ``"text"`` for
the semantic CoT, ``"image"`` for the 576 image tokens), rows laid out as consecutive groups of ``G`` samples.

* :class:`TokenMean` (**official**): ``sum(v * m) / sum(m)`` over the concatenation ``[text ‖ image]``. Every token
  weighs the same, so the 576 image tokens of a sample outweigh its ~40-80 CoT tokens.
* :class:`ModalityMean`: ``sum_k w_k * token_mean_k``: each modality's own token mean, weighted.
* :class:`SequenceMean`: each sample's token mean over its tokens of every modality, then the mean over samples
  (TRL 0.14's GRPO).

``per_group`` (default on): the official run's micro-batch is exactly one group (one prompt per GPU, §7), and the
gradients of groups are then averaged over GPUs and accumulation steps. Computing the token mean *within each
group* and averaging over groups reproduces that weighting for any number of groups per micro-batch, so the loss
does not depend on how groups are placed on processes. ``per_group=False`` pools all tokens of the micro-batch
(the official formula applied to a micro-batch of several groups).

Each choice is a small frozen dataclass selected with Hydra ``_target_`` (e.g. ``grpo.normalization.TokenMean``).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

import torch

__all__ = ["LossNormalization", "ModalityMean", "SequenceMean", "TokenMean", "check_token_inputs"]

Tokens = Mapping[str, torch.Tensor]


class LossNormalization(Protocol):
    def __call__(self, values: Tokens, masks: Tokens, group_size: int) -> torch.Tensor:
        """Per-modality ``[B, L_k]`` values and 0/1 masks -> a scalar."""
        ...


def check_token_inputs(values: Tokens, masks: Tokens) -> int:
    """Same modalities, same shapes, same batch size everywhere; returns the batch size ``B``."""
    if not values:
        raise ValueError("no per-token values given (expected modalities such as 'text' and 'image')")
    if set(values) != set(masks):
        raise ValueError(f"values have modalities {sorted(values)} but masks have {sorted(masks)}")
    batch = None
    for name, value in values.items():
        mask = masks[name]
        if value.dim() != 2 or value.shape != mask.shape:
            raise ValueError(
                f"modality {name!r}: values {tuple(value.shape)} and mask {tuple(mask.shape)} must both be [B, L]"
            )
        if batch is None:
            batch = value.shape[0]
        elif value.shape[0] != batch:
            raise ValueError(f"modality {name!r} has {value.shape[0]} rows, expected {batch}")
    return int(batch)


def _grouped_token_mean(value: torch.Tensor, mask: torch.Tensor, group_size: int, per_group: bool) -> torch.Tensor:
    """Token mean of ``[B, L]`` values under a mask, per group then averaged, or pooled."""
    batch = value.shape[0]
    if batch % group_size:
        raise ValueError(f"{batch} rows are not a whole number of groups of {group_size}")
    mask = mask.to(value.dtype)
    rows = batch // group_size if per_group else 1
    totals = (value * mask).reshape(rows, -1).sum(dim=1)  # [rows]
    counts = mask.reshape(rows, -1).sum(dim=1)  # [rows]
    if (counts == 0).any():
        raise ValueError("a group has no unmasked token: its token mean is undefined")
    return (totals / counts).mean()


@dataclass(frozen=True)
class TokenMean:
    """Official: one token mean over ``[text ‖ image]`` (within each group when ``per_group``)."""

    per_group: bool = True

    def __call__(self, values: Tokens, masks: Tokens, group_size: int) -> torch.Tensor:
        check_token_inputs(values, masks)
        names = list(values)
        value = torch.cat([values[k] for k in names], dim=1)  # [B, sum_k L_k]
        mask = torch.cat([masks[k].to(value.dtype) for k in names], dim=1)
        return _grouped_token_mean(value, mask, group_size, self.per_group)


@dataclass(frozen=True)
class ModalityMean:
    """``sum_k weights[k] * token_mean_k``; a modality present in the values must have a weight.

    Weights of modalities absent from a call are ignored, so one config serves text-only or image-only ablations.
    """

    weights: Mapping[str, float] = field(default_factory=lambda: {"text": 1.0, "image": 1.0})
    per_group: bool = True

    def __call__(self, values: Tokens, masks: Tokens, group_size: int) -> torch.Tensor:
        check_token_inputs(values, masks)
        missing = sorted(set(values) - set(self.weights))
        if missing:
            raise ValueError(f"ModalityMean has no weight for modalities {missing}; weights: {dict(self.weights)}")
        terms = [
            float(self.weights[k]) * _grouped_token_mean(values[k], masks[k], group_size, self.per_group)
            for k in values
        ]
        return torch.stack(terms).sum()


@dataclass(frozen=True)
class SequenceMean:
    """Each sample's token mean (all modalities together), then the mean over samples (TRL 0.14)."""

    def __call__(self, values: Tokens, masks: Tokens, group_size: int) -> torch.Tensor:
        check_token_inputs(values, masks)
        names = list(values)
        value = torch.cat([values[k] for k in names], dim=1)  # [B, L]
        mask = torch.cat([masks[k].to(value.dtype) for k in names], dim=1)
        if value.shape[0] % group_size:
            raise ValueError(f"{value.shape[0]} rows are not a whole number of groups of {group_size}")
        counts = mask.sum(dim=1)
        if (counts == 0).any():
            raise ValueError("a sample has no unmasked token: its sequence mean is undefined")
        return ((value * mask).sum(dim=1) / counts).mean()
