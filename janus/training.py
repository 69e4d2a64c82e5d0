"""Training Janus-Pro from (prompt, plan, image codes) triples: text-to-image with and without a semantic CoT.

The shapes world trains its tiny Janus-Pro from scratch with this (``scripts/train_janus.py``); the data are
:class:`PlannedT2IData` triples, the plan a text description of the very image the codes encode. Every example of a
batch is drawn (from the step's generator) into one of two regimes:

* **with plan** (probability ``plan_prob``): a *text* row, the reasoning prompt of the pipeline's
  :class:`~janus.cot.SemanticCoT` followed by the plan and EOS (``lm_head``), and an *image* row, the image prompt
  ``"{prompt}. {plan}"`` followed by the codes (generation head): the model learns to plan, then to draw its plan;
* **without plan**: an image row with the prompt alone (the plain baseline).

An image row's conditioning is dropped with probability ``cond_dropout_prob`` into the unconditional row the sampler
uses for guidance (:func:`janus.prompting.official_uncond`: BOS, pads, ``<begin_of_image>``, same length), so
classifier-free guidance has something to subtract. The loss is the mean negative log-likelihood of the image codes
plus ``text_weight`` times that of the plan tokens (EOS included), both through the teacher-forced log-probs of
:mod:`janus.logprob` -- the quantities the sampler draws from, so training and sampling cannot disagree on a row.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import torch

from common.io import atomic_write, atomic_write_text

from .logprob import image_logprobs, text_logprobs
from .prompting import official_uncond


@dataclass
class PlannedT2IData:
    """In-memory triples: ``prompts[i]`` and ``plans[i]`` describe the image of ``codes[i]`` ([M, N] int64)."""

    prompts: list[str]
    plans: list[str]
    codes: torch.Tensor

    def __post_init__(self) -> None:
        m = len(self.prompts)
        if len(self.plans) != m or self.codes.ndim != 2 or self.codes.shape[0] != m:
            raise ValueError(f"need M={m} prompts, plans and [M, N] codes, got {len(self.plans)} plans and codes "
                             f"{tuple(self.codes.shape)}")

    def __len__(self) -> int:
        return len(self.prompts)

    def save(self, directory: str | os.PathLike) -> Path:
        """``codes.safetensors`` (``codes`` [M, N] int64) then ``examples.jsonl`` (``{"prompt", "plan"}`` per line,
        written last: a folder with it is complete), atomically."""
        from safetensors.torch import save_file

        directory = Path(directory)
        codes = {"codes": self.codes.to(torch.int64).contiguous()}
        atomic_write(directory / "codes.safetensors", lambda tmp: save_file(codes, tmp))
        atomic_write_text(directory / "examples.jsonl", "".join(
            json.dumps({"prompt": p, "plan": q}) + "\n" for p, q in zip(self.prompts, self.plans)))
        return directory

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "PlannedT2IData":
        from safetensors.torch import load_file

        directory = Path(directory)
        for name in ("examples.jsonl", "codes.safetensors"):
            if not (directory / name).is_file():
                raise FileNotFoundError(f"planned dataset file not found: {directory / name}")
        prompts, plans = [], []
        for lineno, line in enumerate((directory / "examples.jsonl").read_text().splitlines(), 1):
            try:
                record = json.loads(line)
                prompt, plan = record["prompt"], record["plan"]
            except (json.JSONDecodeError, KeyError, TypeError) as err:
                raise ValueError(f"{directory / 'examples.jsonl'}:{lineno}: expected {{'prompt', 'plan'}} ({err})") from err
            prompts.append(prompt)
            plans.append(plan)
        return cls(prompts, plans, load_file(str(directory / "codes.safetensors"))["codes"].long())

    def check(self, layout) -> None:
        """Codes must fit the model's raster and codebook."""
        if self.codes.shape[1] != layout.num_image_tokens:
            raise ValueError(f"{self.codes.shape[1]} codes per image, the model expects {layout.num_image_tokens}")
        if int(self.codes.min()) < 0 or int(self.codes.max()) >= layout.codebook_size:
            raise ValueError(f"codes outside [0, {layout.codebook_size})")


@dataclass
class JanusBatch:
    image_prompts: list[list[int]]  # unpadded [bos, ..., <begin_of_image>] (or their unconditional rows)
    codes: torch.Tensor  # [B, N]
    text_prompts: list[list[int]]  # reasoning prompts of the with-plan examples
    text_targets: list[list[int]]  # their plans' ids + EOS
    with_plan: torch.Tensor  # [B] bool
    dropped: torch.Tensor  # [B] bool: conditioning replaced by the unconditional row


def build_batch(pipe, data: PlannedT2IData, indices: Sequence[int], generator: Optional[torch.Generator] = None, *,
                plan_prob: float = 0.5, cond_dropout_prob: float = 0.1) -> JanusBatch:
    """The rows of examples ``indices`` (regimes and dropout drawn from ``generator``, two draws per example).

    ``pipe``: a :class:`~janus.pipeline.JanusPipeline` with a semantic CoT (its reasoning prompt and chat template
    are the ones the trained model will be sampled with)."""
    if pipe.cot is None:
        raise ValueError("training with plans needs a pipeline with a semantic CoT (its reasoning prompt)")
    if not 0 <= plan_prob <= 1 or not 0 <= cond_dropout_prob <= 1:
        raise ValueError(f"plan_prob and cond_dropout_prob must be in [0, 1], got {plan_prob}, {cond_dropout_prob}")
    rows = list(indices)
    draws = torch.rand(len(rows), 2, generator=generator)
    with_plan, dropped = draws[:, 0] < plan_prob, draws[:, 1] < cond_dropout_prob
    prompts = [data.prompts[i] for i in rows]
    plans = [data.plans[i] if p else None for i, p in zip(rows, with_plan.tolist())]
    image_prompts = pipe.image_prompt_ids(prompts, plans)
    image_prompts = [official_uncond(ids, pipe.layout.pad_id) if d else ids
                     for ids, d in zip(image_prompts, dropped.tolist())]
    planned = [k for k, p in enumerate(with_plan.tolist()) if p]
    text_prompts = pipe.cot.reasoning_ids([prompts[k] for k in planned])
    tok = pipe.tokenizer
    text_targets = [[*tok(plans[k], add_special_tokens=False)["input_ids"], pipe.layout.eos_id] for k in planned]
    return JanusBatch(image_prompts, data.codes[rows], text_prompts, text_targets, with_plan, dropped)


def right_pad(seqs: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``[B, L]`` ids right-padded with ``pad_id`` and the mask (1 on real tokens)."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.as_tensor(list(s), dtype=torch.long)
        mask[i, : len(s)] = 1
    return ids, mask


def t2i_loss(model, batch: JanusBatch, pad_id: int, text_weight: float = 1.0) -> tuple[torch.Tensor, dict]:
    """``(loss, parts)``: mean code NLL + ``text_weight`` x mean plan-token NLL (0 without with-plan rows)."""
    device = next(model.parameters()).device
    image_nll = -image_logprobs(model, batch.image_prompts, batch.codes.to(device), pad_id=pad_id).mean()
    text_nll = image_nll.new_zeros(())
    if batch.text_prompts:
        ids, mask = right_pad(batch.text_targets, pad_id)
        lp = text_logprobs(model, batch.text_prompts, ids.to(device), mask.to(device), pad_id=pad_id)
        text_nll = -lp.sum() / mask.sum().clamp(min=1)
    loss = image_nll + text_weight * text_nll
    return loss, {"image_nll": image_nll.detach(), "text_nll": text_nll.detach()}


class T2ILoss(torch.nn.Module):
    """:func:`t2i_loss` as a module around the model, so that ``accelerator.prepare`` (DDP, FSDP) wraps the whole
    forward of a training step (the loss reaches into the model's sub-modules, which a wrapped model's hooks would
    not see)."""

    def __init__(self, model, pad_id: int, text_weight: float = 1.0) -> None:
        super().__init__()
        self.model, self.pad_id, self.text_weight = model, pad_id, text_weight

    def forward(self, batch: JanusBatch) -> tuple[torch.Tensor, dict]:
        return t2i_loss(self.model, batch, self.pad_id, self.text_weight)
