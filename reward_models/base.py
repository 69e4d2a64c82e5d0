"""Judge protocols and the typed result every reward model returns (ARCHITECTURE.md, STYLE.md point 3).

Two kinds of judges:

* an :class:`OutcomeJudge` scores finished images against their prompts (ORM, paper §4; CLIP score, HPS, ...);
* a :class:`ProcessJudge` scores the *predicted clean image* of an intermediate decoding step (PRM, paper §5;
  PARM's clarity judgment, paper §6).

Both return a :class:`JudgeOutput`: one float score per sample, optional named components (e.g. ``p_yes``,
``p_no``), optional generated texts, and a :class:`JudgeCost` so search strategies can report what verification
cost. Images travel in memory as PIL RGB images; nothing is passed through files.

A new judge is one module implementing ``score`` (and/or ``score_steps``) plus one YAML file with ``_target_``.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import torch
from PIL import Image

__all__ = [
    "JudgeCost",
    "Conversation",
    "Generators",
    "JudgeOutput",
    "OutcomeJudge",
    "ProcessJudge",
    "TextOutput",
    "YesNoJudge",
    "concat_outputs",
    "per_image_generators",
    "validate_images",
    "validate_judge_inputs",
    "validate_step",
]


@dataclass(frozen=True)
class JudgeCost:
    """What one judge call cost.

    ``forward_passes`` counts model forward calls on a batch *per sample* (a batch of 4 prompts scored in one
    forward pass counts 4, so costs do not depend on the batch size); ``generated_tokens`` counts tokens
    produced by autoregressive generation (explanations, sampled answers); ``images_scored`` counts images seen.
    """

    forward_passes: int = 0
    generated_tokens: int = 0
    images_scored: int = 0

    def __add__(self, other: JudgeCost) -> JudgeCost:
        if not isinstance(other, JudgeCost):
            return NotImplemented
        return JudgeCost(
            forward_passes=self.forward_passes + other.forward_passes,
            generated_tokens=self.generated_tokens + other.generated_tokens,
            images_scored=self.images_scored + other.images_scored,
        )

    def __radd__(self, other: object) -> JudgeCost:
        # Lets ``sum(costs)`` start from the integer 0.
        if other == 0:
            return self
        return NotImplemented

    def as_dict(self) -> dict[str, int]:
        return {
            "forward_passes": self.forward_passes,
            "generated_tokens": self.generated_tokens,
            "images_scored": self.images_scored,
        }


@dataclass
class JudgeOutput:
    """Result of judging a batch of B samples.

    Attributes:
        scores: ``[B]`` float tensor on the CPU; higher is better. For yes/no judges this is P("yes").
        components: named ``[B]`` tensors that explain the score (e.g. ``p_yes``, ``p_no``, ``p_yes_norm``,
            ``answer_yes`` as 0/1 floats).
        texts: optional list of B generated strings (answers or explanations).
        cost: what producing this output cost.
    """

    scores: torch.Tensor
    components: dict[str, torch.Tensor] = field(default_factory=dict)
    texts: list[str] | None = None
    cost: JudgeCost = field(default_factory=JudgeCost)

    def __post_init__(self) -> None:
        if not isinstance(self.scores, torch.Tensor) or self.scores.dim() != 1:
            raise ValueError(f"JudgeOutput.scores must be a 1-D tensor [B], got {_describe(self.scores)}")
        if not self.scores.is_floating_point():
            raise ValueError(f"JudgeOutput.scores must be floating point, got dtype {self.scores.dtype}")
        batch = self.scores.shape[0]
        for name, value in self.components.items():
            if not isinstance(value, torch.Tensor) or value.shape[:1] != (batch,):
                raise ValueError(
                    f"JudgeOutput.components[{name!r}] must be a tensor with leading dimension {batch}, "
                    f"got {_describe(value)}"
                )
        if self.texts is not None and len(self.texts) != batch:
            raise ValueError(f"JudgeOutput.texts has {len(self.texts)} entries for a batch of {batch}")

    def __len__(self) -> int:
        return self.scores.shape[0]

    def take(self, indices: Sequence[int]) -> JudgeOutput:
        """The sub-batch at ``indices`` (the cost stays with the full batch, so it is reported as zero here)."""
        index = torch.as_tensor(list(indices), dtype=torch.long)
        return JudgeOutput(
            scores=self.scores[index],
            components={k: v[index] for k, v in self.components.items()},
            texts=None if self.texts is None else [self.texts[i] for i in index.tolist()],
        )


def concat_outputs(outputs: Sequence[JudgeOutput]) -> JudgeOutput:
    """Concatenate per-batch outputs along the batch dimension and add their costs.

    Components present in only some of the outputs are dropped, and texts are kept only when every output has
    them, so the result always satisfies :class:`JudgeOutput`'s shape checks.
    """
    if not outputs:
        raise ValueError("concat_outputs needs at least one JudgeOutput")
    keys = set(outputs[0].components)
    for out in outputs[1:]:
        keys &= set(out.components)
    texts = None
    if all(out.texts is not None for out in outputs):
        texts = [t for out in outputs for t in out.texts]  # type: ignore[union-attr]
    return JudgeOutput(
        scores=torch.cat([out.scores for out in outputs]),
        components={k: torch.cat([out.components[k] for out in outputs]) for k in sorted(keys)},
        texts=texts,
        cost=sum((out.cost for out in outputs), JudgeCost()),
    )


@runtime_checkable
class OutcomeJudge(Protocol):
    """Scores finished images against their prompts (paper §4)."""

    def score(self, prompts: Sequence[str], images: Sequence[Image.Image]) -> JudgeOutput:
        """``prompts[i]`` describes ``images[i]``; returns B scores, higher = better match."""
        ...


@runtime_checkable
class ProcessJudge(Protocol):
    """Scores the predicted clean images of one intermediate step (paper §5)."""

    def score_steps(
        self, prompts: Sequence[str], step_images: Sequence[Image.Image], step: int, num_steps: int
    ) -> JudgeOutput:
        """``step`` is 0-based, ``0 <= step < num_steps``; ``step_images[i]`` is path i's predicted image."""
        ...


# A chat as a list of ``{"role": "user" | "assistant", "content": str}`` messages. User contents are rendered
# questions; exactly one of them carries the image placeholder (``YesNoJudge.image_token``).
Conversation = list[dict[str, str]]

# What a sampling judge draws with: one generator for the whole batch, one per image, or ``None`` (the judge's own
# seeded generator).
Generators = torch.Generator | Sequence[torch.Generator] | None


def per_image_generators(
    generator: Generators, count: int, default: torch.Generator, *, what: str = "images"
) -> list[torch.Generator]:
    """``count`` generators, one per row: ``generator`` (or ``default`` when ``None``) repeated, or the given list.

    A list must hold exactly one generator per row (``what`` names the rows in the error).
    """
    if generator is None:
        return [default] * count
    if isinstance(generator, torch.Generator):
        return [generator] * count
    if len(generator) != count:
        raise ValueError(f"got {len(generator)} generators for {count} {what}")
    return list(generator)


@dataclass
class TextOutput:
    """Generated texts for a batch (explanations, PARM++ reflections) and what generating them cost."""

    texts: list[str]
    cost: JudgeCost = field(default_factory=JudgeCost)


@runtime_checkable
class YesNoJudge(Protocol):
    """The primitive under ORM / PRM / PARM / PARM++: ask yes/no questions about images (paper §3).

    ``ask`` returns a :class:`JudgeOutput` whose ``scores`` are P("yes") and whose components include ``p_yes``,
    ``p_no`` and the decisions ``answer_yes`` / ``answer_no`` (0/1 floats; both 0 for an answer that is neither,
    which only a sampled answer can be). Test doubles implement this protocol to script the answers.
    """

    image_token: str

    def ask(
        self, conversations: Sequence[Conversation], images: Sequence[Image.Image], *, generator: Generators = None
    ) -> JudgeOutput:
        ...

    def generate_text(
        self, conversations: Sequence[Conversation], images: Sequence[Image.Image], *, max_new_tokens: int | None = None
    ) -> TextOutput:
        ...


def validate_images(
    images: Sequence[Image.Image],
    *,
    name: str = "images",
    expected_size: tuple[int, int] | None = None,
    indices: Sequence[int] | None = None,
) -> None:
    """Raise a clear error unless every entry is a non-empty PIL image in mode RGB (of ``expected_size`` if given).

    ``expected_size`` is PIL's ``(width, height)``; ``indices`` names the entries in messages when ``images`` is
    a subset of a larger list (default: their positions).
    """
    labels = range(len(images)) if indices is None else list(indices)
    for i, image in zip(labels, images):
        if not isinstance(image, Image.Image):
            raise TypeError(f"{name}[{i}] must be a PIL.Image.Image, got {type(image).__name__}")
        if image.mode != "RGB":
            raise ValueError(
                f"{name}[{i}] has mode {image.mode!r}; judges take RGB images (use image.convert('RGB'))"
            )
        width, height = image.size
        if width < 1 or height < 1:
            raise ValueError(f"{name}[{i}] has an empty size {image.size}")
        if expected_size is not None and image.size != tuple(expected_size):
            raise ValueError(f"{name}[{i}] has size {image.size}, expected {tuple(expected_size)} (width, height)")


def validate_judge_inputs(
    prompts: Sequence[str],
    images: Sequence[Image.Image],
    *,
    images_name: str = "images",
    expected_size: tuple[int, int] | None = None,
) -> None:
    """Check a ``(prompts, images)`` batch: non-empty, equal lengths, strings, RGB PIL images."""
    if isinstance(prompts, str):
        raise TypeError("prompts must be a list of strings, got a single str")
    if len(prompts) == 0:
        raise ValueError("prompts is empty: a judge needs at least one (prompt, image) pair")
    if len(prompts) != len(images):
        raise ValueError(f"len(prompts)={len(prompts)} != len({images_name})={len(images)}")
    for i, prompt in enumerate(prompts):
        if not isinstance(prompt, str):
            raise TypeError(f"prompts[{i}] must be a str, got {type(prompt).__name__}")
    validate_images(images, name=images_name, expected_size=expected_size)


def validate_step(step: int, num_steps: int) -> None:
    """``0 <= step < num_steps`` with ``num_steps >= 1``."""
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    if not 0 <= step < num_steps:
        raise ValueError(f"step must be in [0, {num_steps}), got {step}")


def _describe(value: object) -> str:
    if isinstance(value, torch.Tensor):
        return f"tensor of shape {tuple(value.shape)}"
    return type(value).__name__
