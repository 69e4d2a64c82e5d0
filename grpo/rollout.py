"""What one rollout of BiCoT-GRPO holds, generator-agnostic (t2i_r1.md §3.3, §5.1, §6.1).

A rollout is ``B = n_prompts * G`` samples, the ``G`` samples of a prompt on consecutive rows (the official
"interleaved repeat" of each prompt). Per sample: the semantic CoT's token ids and mask (the text ``[B, Lt]``; tokens
up to and including the first EOS count, padding does not), the image token ids ``[B, Li]`` (576 for Janus-Pro, all
counted), the behaviour (``old``) and reference log-probs of both, each reward expert's raw score and, once
computed, the aggregated reward and the advantages. ``inputs`` carries any further row-aligned tensors the generator
needs for its teacher-forced passes (prompt ids, attention masks, ...).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import torch

__all__ = ["Rollout", "completion_mask"]

MODALITIES = ("text", "image")


def completion_mask(ids: torch.Tensor, eos_token_id: int) -> torch.Tensor:
    """``[B, L]`` 0/1 long: tokens up to and including the first ``eos_token_id`` (all tokens if none; §3.3).

    Whatever follows the first EOS (padding, or tokens sampled after it) is masked out.
    """
    if ids.dim() != 2:
        raise ValueError(f"ids must be [B, L], got shape {tuple(ids.shape)}")
    is_eos = ids == eos_token_id
    length = ids.shape[1]
    first = torch.where(is_eos.any(dim=1), is_eos.int().argmax(dim=1), torch.full_like(ids[:, 0], length))
    positions = torch.arange(length, device=ids.device)[None, :]
    return (positions <= first[:, None]).long()


def _check_rows(name: str, value: torch.Tensor, batch: int, dims: int) -> None:
    if not isinstance(value, torch.Tensor) or value.dim() != dims or value.shape[0] != batch:
        shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        raise ValueError(f"Rollout.{name} must be a {dims}-D tensor with {batch} rows, got {shape}")


@dataclass
class Rollout:
    """One batch of sampled (CoT, image) pairs with everything the update needs. Shapes: ``B`` rows.

    Attributes:
        prompts: the ``B`` raw prompts (each repeated ``group_size`` times on consecutive rows).
        group_size: ``G`` samples per prompt.
        text_ids: ``[B, Lt]`` long, the semantic CoT (``Lt`` may be 0 for image-only GRPO).
        text_mask: ``[B, Lt]`` 0/1, see :func:`completion_mask`.
        image_ids: ``[B, Li]`` long image tokens.
        rewards: expert name -> ``[B]`` raw reward.
        reward: ``[B]`` aggregated reward (official: the plain sum of ``rewards``), or ``None`` until computed.
        advantages: ``[B]``, or ``None`` until computed.
        old_logps: ``{"text": [B, Lt], "image": [B, Li]}`` behaviour log-probs (needed to reuse a rollout).
        ref_logps: the same under the frozen reference (or precomputed), ``None`` without a reference.
        prompt_index: ``[B]`` long dataset index of each row's prompt.
        inputs: further row-aligned tensors for the generator's teacher-forced passes.
    """

    prompts: list[str]
    group_size: int
    text_ids: torch.Tensor
    text_mask: torch.Tensor
    image_ids: torch.Tensor
    rewards: dict[str, torch.Tensor] = field(default_factory=dict)
    reward: torch.Tensor | None = None
    advantages: torch.Tensor | None = None
    old_logps: dict[str, torch.Tensor] | None = None
    ref_logps: dict[str, torch.Tensor] | None = None
    prompt_index: torch.Tensor | None = None
    inputs: dict[str, torch.Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        batch = len(self.prompts)
        if self.group_size < 1 or batch == 0 or batch % self.group_size:
            raise ValueError(f"Rollout: {batch} prompts are not a whole number of groups of {self.group_size}")
        for g in range(0, batch, self.group_size):
            if len(set(self.prompts[g : g + self.group_size])) != 1:
                raise ValueError(f"Rollout: rows {g}..{g + self.group_size - 1} must repeat one prompt (one group)")
        for name in ("text_ids", "text_mask", "image_ids"):
            _check_rows(name, getattr(self, name), batch, 2)
        if self.text_mask.shape != self.text_ids.shape:
            raise ValueError(f"Rollout.text_mask {tuple(self.text_mask.shape)} != text_ids {tuple(self.text_ids.shape)}")
        for name, value in self.rewards.items():
            _check_rows(f"rewards[{name!r}]", value, batch, 1)
        for name in ("reward", "advantages", "prompt_index"):
            if getattr(self, name) is not None:
                _check_rows(name, getattr(self, name), batch, 1)
        for name in ("old_logps", "ref_logps"):
            logps = getattr(self, name)
            if logps is None:
                continue
            unknown = sorted(set(logps) - set(MODALITIES))
            if unknown:
                raise ValueError(f"Rollout.{name} has unknown modalities {unknown}; expected {list(MODALITIES)}")
            for key, value in logps.items():
                if value.shape != self.token_ids[key].shape:
                    raise ValueError(
                        f"Rollout.{name}[{key!r}] {tuple(value.shape)} != {key} ids {tuple(self.token_ids[key].shape)}"
                    )
        for name, value in self.inputs.items():
            if not isinstance(value, torch.Tensor) or value.dim() == 0 or value.shape[0] != batch:
                raise ValueError(f"Rollout.inputs[{name!r}] must be a tensor with {batch} rows")

    def __len__(self) -> int:
        return len(self.prompts)

    @property
    def num_groups(self) -> int:
        return len(self.prompts) // self.group_size

    @property
    def token_ids(self) -> dict[str, torch.Tensor]:
        return {"text": self.text_ids, "image": self.image_ids}

    def masks(self, modalities: Sequence[str] = MODALITIES) -> dict[str, torch.Tensor]:
        """Modality -> ``[B, L]`` float mask: the CoT mask for text, all ones for the image tokens (§6.1)."""
        full = {"text": self.text_mask.float(), "image": torch.ones_like(self.image_ids, dtype=torch.float)}
        return {k: full[k] for k in modalities}

    @property
    def cot_length(self) -> torch.Tensor:
        """``[B]`` float: counted CoT tokens per sample (EOS included)."""
        return self.text_mask.float().sum(dim=1)

    def select(self, rows: Sequence[int]) -> Rollout:
        """The rows ``rows`` (whole groups, in group order) as a new rollout."""
        index = torch.as_tensor(list(rows), dtype=torch.long)

        def take(value):
            return None if value is None else value[index.to(value.device)]

        def take_all(mapping):
            return None if mapping is None else {k: take(v) for k, v in mapping.items()}

        return replace(
            self,
            prompts=[self.prompts[i] for i in index.tolist()],
            text_ids=take(self.text_ids),
            text_mask=take(self.text_mask),
            image_ids=take(self.image_ids),
            rewards=take_all(self.rewards),
            reward=take(self.reward),
            advantages=take(self.advantages),
            old_logps=take_all(self.old_logps),
            ref_logps=take_all(self.ref_logps),
            prompt_index=take(self.prompt_index),
            inputs=take_all(self.inputs),
        )

    def micro_batches(self, groups_per_batch: int) -> list[Rollout]:
        """Split into micro-batches of ``groups_per_batch`` whole groups (gradient accumulation)."""
        if groups_per_batch < 1 or self.num_groups % groups_per_batch:
            raise ValueError(
                f"{self.num_groups} groups cannot be split into micro-batches of {groups_per_batch} groups"
            )
        rows = groups_per_batch * self.group_size
        return [self.select(range(start, start + rows)) for start in range(0, len(self), rows)]
