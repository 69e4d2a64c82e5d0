"""The generator protocol, written down once: what search, judges' pools, DPO / GRPO and the recipes ask of a
text-to-image generator (Show-o: :class:`showo.pipeline.ShowoPipeline`; Janus-Pro: :class:`janus.pipeline.JanusPipeline`).

A generation is driven from outside, one step at a time, with one ``torch.Generator`` per image::

    pipe.check_sampling(sampling, "model.sampling")     # ConfigError naming a bad key, before anything is written
    state = pipe.prepare(prompts, generator=[g0, g1, ...], **sampling)
    while not state.done:
        out = pipe.step(state)                          # out.sampled [B, N]: the predicted image after the step
        state.select(rows)                              # prune / branch rows between steps (KV caches follow)
    images = pipe.decode(state.final_tokens, "pil")     # one image per decoder call: the one decode path

What a *step* is belongs to the generator: one MaskGIT step of Show-o (every position predicted), K raster rows of
Janus-Pro (the rows below filled by a documented policy). ``num_steps(sampling)`` says how many there are and
``image_forward_passes(sampling, steps)`` what one image costs after ``steps`` of them, so strategies count costs
in one unit (generator forward passes per image). ``state.cots`` is the text each image was conditioned on besides
its prompt (Janus-Pro's semantic CoT), ``None`` for a generator that writes none. ``image_logprobs`` gives
per-token log-probabilities of given codes with gradients, for training: exact (teacher-forced) for the
autoregressive Janus-Pro, one seeded masked draw of Show-o's Monte-Carlo estimate (``showo/logprob.py``).

``typing.Protocol`` classes, checked structurally (``isinstance`` on the runtime-checkable ones checks that the
members exist; ``tests/test_generator_protocol.py`` checks both pipelines further). This module imports no project
package: it sits at the bottom of the house with the rest of ``common``.
"""
from __future__ import annotations

from typing import Any, Mapping, Optional, Protocol, Sequence, Union, runtime_checkable

import torch

Generators = Union[None, torch.Generator, Sequence[torch.Generator]]
Sampling = Mapping[str, Any]  # the keyword settings of every generation (``model.sampling`` in the configs)


@runtime_checkable
class StepOutput(Protocol):
    """What one step returns: ``sampled`` [B, N], the codes of the predicted image after the step (decode it to
    look at it)."""

    sampled: torch.Tensor


@runtime_checkable
class GenerationState(Protocol):
    """One batch of images in generation; rows are images."""

    prompts: list[str]
    generator: Generators  # settable: a branched row gets a fresh generator
    forward_passes: int  # generator forward passes so far, counted per image
    cots: Optional[list[str]]  # per image, the text it is conditioned on besides its prompt (None: none)

    @property
    def batch_size(self) -> int: ...

    @property
    def done(self) -> bool: ...

    @property
    def final_tokens(self) -> torch.Tensor:
        """[B, N] the generated codes (after the last step)."""
        ...

    def select(self, rows: Sequence[int]) -> None:
        """Keep (and possibly repeat) rows in place; a repeated row gets a copy of its generator."""
        ...

    def split(self, rows: Sequence[int]) -> "GenerationState":
        """A new state holding copies of ``rows`` and of their generators (this one unchanged): stepped on, it draws
        what those rows would have drawn here, so a stopped path can be resumed instead of generated again."""
        ...


@runtime_checkable
class GenerationOutput(Protocol):
    """What ``pipe(prompts, ...)`` returns."""

    tokens: torch.Tensor  # [B, N]
    images: Any  # PIL images ("pil"), a [B, 3, H, W] tensor in [0, 1] ("pt") or None ("tokens")
    forward_passes: int
    cots: Optional[list[str]]


@runtime_checkable
class ImageGenerator(Protocol):
    """A text-to-image pipeline that search strategies, pools, recipes and trainers can drive."""

    @property
    def device(self) -> torch.device: ...

    @property
    def can_decode(self) -> bool:
        """Whether ``decode`` can turn codes into images (Show-o without a VQ model cannot)."""
        ...

    def check_sampling(self, sampling: Sampling, where: str = "model.sampling") -> None:
        """Raise :class:`common.validate.ConfigError` naming every bad or unknown key."""
        ...

    def num_steps(self, sampling: Sampling) -> int: ...

    def image_forward_passes(self, sampling: Sampling, steps: int) -> int:
        """Forward passes one image spends in its first ``steps`` steps."""
        ...

    def prepare(self, prompts: Optional[Sequence[str]] = None, *, generator: Generators = None,
                **sampling: Any) -> GenerationState: ...

    def step(self, state: Any) -> StepOutput: ...

    def decode(self, tokens: torch.Tensor, output_type: str = "pil") -> Any:
        """[B, N] codes -> B PIL images ("pil") or [B, 3, H, W] in [0, 1] ("pt"), one image per decoder call."""
        ...

    def __call__(self, prompts: Optional[Sequence[str]] = None, *, generator: Generators = None,
                 output_type: str = "pil", **sampling: Any) -> GenerationOutput: ...

    def image_logprobs(self, prompts: Sequence[str], tokens: torch.Tensor, *,
                       generator: Generators = None) -> torch.Tensor:
        """[B, N] log-probabilities of the given codes after the prompts, with gradients (training)."""
        ...


__all__ = ["GenerationOutput", "GenerationState", "Generators", "ImageGenerator", "Sampling", "StepOutput"]
