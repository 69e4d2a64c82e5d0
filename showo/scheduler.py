"""MaskGIT unmasking scheduler of Show-o (showo.md §9).

The scheduler owns the mask schedule and one step of unmasking; the model call and classifier-free guidance live in
the pipeline. One :meth:`MaskGITScheduler.step` reproduces one iteration of the official ``t2i_generate`` loop:

1. sample every image position from ``softmax(logits)`` (float32 multinomial: an ``exponential_`` draw of shape
   ``[B*N, K]``) and keep the known tokens;
2. ``mask_len = floor(N * schedule((t+1)/T))`` in float32 (so 127, not 128, at step 11 of 18), clamped to
   ``[1, unknown - 1]``;
3. re-mask the ``mask_len`` least confident tokens, confidence = ``log p(sampled) + temperature * gumbel`` (a
   ``uniform_`` draw of shape ``[B, N]``).

**Temperature quirk.** The official loop overwrites its temperature with ``temperature * (1 - ratio)`` at every step,
so annealing compounds: ``T_t = T0 * prod_{k<=t} (1 - (k+1)/T)``. This is reproduced by default
(``temperature_schedule="compound"``) because a "fixed" schedule changes the outputs; ``"linear"`` gives MaskGIT's
``T0 * (1 - (t+1)/T)``. Each call of the pipeline starts from ``T0`` again (the Image-Generation-CoT code does not
reset it, so every image after its first one is sampled with temperature 0; we do not copy that).

Random draws: with one ``torch.Generator`` the draws are the official ones in the official order. With a list of
generators (one per image) each image's draws come from its own generator, so an image does not depend on the batch.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional, Sequence, Union

import torch

Generator = Union[None, torch.Generator, Sequence[torch.Generator]]


def cosine_schedule(t: torch.Tensor) -> torch.Tensor:
    return torch.cos(t * math.pi * 0.5)


def linear_schedule(t: torch.Tensor) -> torch.Tensor:
    return 1 - t


def pow_schedule(t: torch.Tensor, exp: float = 2.0) -> torch.Tensor:
    return 1.0 - t**exp


def sigmoid_schedule(t: torch.Tensor, start: float = -3.0, end: float = 3.0, tau: float = 1.0) -> torch.Tensor:
    v_start = torch.sigmoid(torch.tensor(start / tau))
    v_end = torch.sigmoid(torch.tensor(end / tau))
    return (v_end - torch.sigmoid((t * (end - start) + start) / tau)) / (v_end - v_start)


MASK_SCHEDULES: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "cosine": cosine_schedule, "linear": linear_schedule, "pow": pow_schedule, "sigmoid": sigmoid_schedule,
}


def _log(t: torch.Tensor, eps: float = 1e-20) -> torch.Tensor:
    return torch.log(t.clamp(min=eps))


def _rows_with_generators(shape_per_row: tuple[int, ...], rows: int, generator: Generator, draw) -> torch.Tensor:
    """Draw ``rows`` blocks with one shared generator (one call, official order) or one generator per row."""
    if generator is None or isinstance(generator, torch.Generator):
        return draw((rows, *shape_per_row), generator)
    if len(generator) != rows:
        raise ValueError(f"got {len(generator)} generators for a batch of {rows} images")
    return torch.stack([draw(shape_per_row, g) for g in generator])


@dataclass
class StepOutput:
    tokens: torch.Tensor  # [B, N] code space, ``mask_id`` where re-masked: the input of the next step
    sampled: torch.Tensor  # [B, N] code space: the model's full prediction at this step (known tokens kept)
    masking: torch.Tensor  # [B, N] bool: re-masked positions
    confidence: torch.Tensor  # [B, N] float32 probability of each sampled token (finfo.max for known tokens)
    mask_len: torch.Tensor  # [B, 1] number of tokens left masked


@dataclass(frozen=True)
class MaskGITScheduler:
    """Mask schedule + one unmasking step. Immutable: the step index and step count travel with the sampling state
    (:class:`showo.pipeline.SamplingState`), so one scheduler serves any number of concurrent generations.

    Built from ``model.scheduler`` in the configs (``_target_: showo.scheduler.MaskGITScheduler``).
    """

    mask_schedule: str = "cosine"
    temperature: float = 1.0
    temperature_schedule: str = "compound"  # "compound" (official) | "linear" (MaskGIT)

    def __post_init__(self) -> None:
        if self.mask_schedule not in MASK_SCHEDULES:
            raise ValueError(f"unknown mask_schedule {self.mask_schedule!r}; choose from {sorted(MASK_SCHEDULES)}")
        if self.temperature_schedule not in ("compound", "linear"):
            raise ValueError(f"temperature_schedule must be 'compound' or 'linear', got {self.temperature_schedule!r}")
        if not (isinstance(self.temperature, (int, float)) and math.isfinite(self.temperature) and self.temperature >= 0):
            raise ValueError(f"temperature must be a finite number >= 0, got {self.temperature!r}")

    def temperatures(self, num_steps: int) -> list[float]:
        """The gumbel temperature of every step (python-float arithmetic in the official order, so the tensors see
        the same scalars). Every generation starts again from ``temperature``."""
        if num_steps < 1:
            raise ValueError(f"num_inference_steps must be >= 1, got {num_steps}")
        temps, t = [], self.temperature
        for step in range(num_steps):
            ratio = 1.0 * (step + 1) / num_steps
            t = t * (1.0 - ratio) if self.temperature_schedule == "compound" else self.temperature * (1.0 - ratio)
            temps.append(t)
        return temps

    def mask_ratio(self, step: int, num_steps: int) -> torch.Tensor:
        """Fraction of tokens still masked after ``step`` (0-dim float32 tensor, as the official code computes it)."""
        return MASK_SCHEDULES[self.mask_schedule](torch.tensor(1.0 * (step + 1) / num_steps))

    def step(self, logits: torch.Tensor, tokens: torch.Tensor, mask_id: int, *, step: int, num_steps: int,
             temperature: Optional[float] = None, generator: Generator = None) -> StepOutput:
        """One unmasking step.

        Args:
            logits: [B, N, K] float32 guided logits over the K image codes (mask column excluded).
            tokens: [B, N] current tokens in code space, ``mask_id`` where unknown.
            mask_id: the ``[MASK]`` value used in ``tokens``.
            step: 0-based step index; num_steps: the generation's step count.
            temperature: this step's gumbel temperature (default: ``self.temperatures(num_steps)[step]``; the
                pipeline passes the value it computed once per generation).
            generator: ``None``, one generator, or one per image.
        """
        if not 0 <= step < num_steps:
            raise ValueError(f"step {step} outside [0, {num_steps})")
        if temperature is None:
            temperature = self.temperatures(num_steps)[step]
        b, n, k = logits.shape
        probs = logits.softmax(dim=-1)
        sampled = self._sample(probs, generator)  # [B, N]
        unknown = tokens == mask_id
        sampled = torch.where(unknown, sampled, tokens)
        mask_ratio = self.mask_ratio(step, num_steps)
        confidence = torch.gather(probs, -1, sampled.long()[..., None]).squeeze(-1)
        confidence = torch.where(unknown, confidence, torch.finfo(confidence.dtype).max)
        mask_len = (n * mask_ratio).floor().unsqueeze(0).to(logits.device)
        mask_len = torch.max(torch.tensor([1], device=logits.device), torch.min(unknown.sum(dim=-1, keepdim=True) - 1, mask_len))
        gumbel = -_log(-_log(_rows_with_generators(
            (n,), b, generator,
            lambda shape, g: torch.zeros(shape, dtype=confidence.dtype, device=confidence.device).uniform_(0, 1, generator=g),
        )))
        scores = _log(confidence) + temperature * gumbel
        cut = torch.gather(torch.sort(scores, dim=-1).values, 1, mask_len.long())
        masking = scores < cut
        return StepOutput(
            tokens=torch.where(masking, mask_id, sampled), sampled=sampled, masking=masking,
            confidence=confidence, mask_len=mask_len,
        )

    @staticmethod
    def _sample(probs: torch.Tensor, generator: Generator) -> torch.Tensor:
        b, n, k = probs.shape
        if generator is None or isinstance(generator, torch.Generator):
            return torch.multinomial(probs.reshape(-1, k), 1, generator=generator)[:, 0].view(b, n)
        if len(generator) != b:
            raise ValueError(f"got {len(generator)} generators for a batch of {b} images")
        return torch.stack([torch.multinomial(probs[i], 1, generator=g)[:, 0] for i, g in enumerate(generator)])
