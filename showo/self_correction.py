"""Self-correction for Show-o: "prompt + feedback + previous image -> new image" (paper §7, reference §7, §16).

The paper fine-tunes Show-o on (prompt, bad image, reflection, good image) groups but does not give the input layout.
Ours extends the t2i layout by a longer conditioning part; the new image sits where t2i puts it::

    [PAD]*p <|t2i|> bos prompt... eos bos feedback... eos <|sov|> prev_0 .. prev_{N-1} <|eov|> | <|soi|> image_0..N-1 <|eoi|>
    \\_____________________________ T' = sc_layout.text_len ___________________________________/

* ``T' = T + (F + 2) + (N + 2)`` with ``T`` the t2i text part and ``F = max_feedback_length``; the whole
  conditioning is left-padded as a unit, so it is a t2i sequence of :attr:`SelfCorrectionFormat.sc_layout`
  (a :class:`~showo.tokens.TokenLayout` with a larger ``max_seq_length``) and everything built for t2i works
  unchanged: :func:`showo.prompting.t2i_attention_mask` (omni-attention: the conditioning is causal, the new image
  attends to all of it and to itself), the pipeline with its prefix cache, :func:`showo.loss.t2i_loss`.
* The previous image is delimited by ``<|sov|>``/``<|eov|>`` (tags Show-o's vocabulary has but t2i never uses),
  because the t2i mask requires exactly one ``<|soi|>``. Its tokens sit in the causal part: every new-image row
  still sees the whole previous image; a bidirectional previous-image block would need a new mask and no prefix
  cache (left for later).
* Classifier-free guidance: the unconditional sequence drops prompt, feedback and previous image together
  (``<|t2i|> bos eos``, the pipeline's default), and training drops the same whole conditioning with probability
  ``cond_dropout_prob``.

Training data: a folder with ``groups.jsonl`` (``{"prompt", "feedback"}`` per line) and ``codes.safetensors`` (``bad``
and ``good`` [M, N]: MAGVIT-v2 codes of the rejected and the accepted image, from ``showo.data.tokenize_images``);
:class:`SelfCorrectionDataset` plugs into ``scripts/train_showo.py`` like ``showo.data.TokenizedT2IDataset``.
"""
from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import torch
from safetensors.torch import load_file, save_file

from common.io import atomic_write, atomic_write_text
from showo.loss import IGNORE_INDEX, mask_image_tokens
from showo.pipeline import ShowoPipeline
from showo.prompting import t2i_attention_mask
from showo.tokens import TokenLayout


@dataclass(frozen=True)
class SelfCorrectionFormat:
    """Builds and parses self-correction sequences on top of a t2i ``layout``."""

    layout: TokenLayout
    max_feedback_length: int = 64

    def __post_init__(self) -> None:
        if self.max_feedback_length < 0:
            raise ValueError(f"max_feedback_length must be >= 0, got {self.max_feedback_length}")

    @property
    def sc_layout(self) -> TokenLayout:
        """The t2i layout whose text part holds prompt + feedback + previous image."""
        extra = self.max_feedback_length + 2 + self.layout.num_image_tokens + 2
        return TokenLayout(llm_vocab_size=self.layout.llm_vocab_size, codebook_size=self.layout.codebook_size,
                           num_image_tokens=self.layout.num_image_tokens,
                           num_new_special_tokens=self.layout.num_new_special_tokens,
                           max_seq_length=self.layout.max_seq_length + extra, bos_id=self.layout.bos_id,
                           eos_id=self.layout.eos_id)

    def conditioning(self, prompt_ids: Sequence[int], feedback_ids: Sequence[int], prev_codes: torch.Tensor) -> list[int]:
        """The left-padded conditioning part (``sc_layout.text_len`` ids) of one sequence."""
        lay = self.layout
        prompt_ids, feedback_ids = list(prompt_ids), list(feedback_ids)
        for name, ids in (("prompt", prompt_ids), ("feedback", feedback_ids)):
            bad = [i for i in ids if not 0 <= i < lay.llm_vocab_size or i in (lay.bos_id, lay.eos_id)]
            if bad:
                raise ValueError(f"{name} ids {bad[:5]} are not plain text tokens (outside the text vocabulary or bos/eos)")
        if len(prompt_ids) > lay.text_len - 3:
            warnings.warn(f"prompt of {len(prompt_ids)} tokens truncated to {lay.text_len - 3}", stacklevel=2)
            prompt_ids = prompt_ids[: lay.text_len - 3]
        if len(feedback_ids) > self.max_feedback_length:
            warnings.warn(f"feedback of {len(feedback_ids)} tokens truncated to {self.max_feedback_length}", stacklevel=2)
            feedback_ids = feedback_ids[: self.max_feedback_length]
        prev = _codes(prev_codes, lay, "prev_codes")
        ids = [lay.t2i_id, lay.bos_id, *prompt_ids, lay.eos_id, lay.bos_id, *feedback_ids, lay.eos_id,
               lay.special_id("<|sov|>"), *(c + lay.image_offset for c in prev), lay.special_id("<|eov|>")]
        return [lay.pad_id] * (self.sc_layout.text_len - len(ids)) + ids

    def build(self, prompt_ids: Sequence[Sequence[int]], feedback_ids: Sequence[Sequence[int]],
              prev_codes: torch.Tensor, target: Optional[torch.Tensor] = None) -> torch.Tensor:
        """[B, L'] sequences; ``target`` [B, N] holds new-image token ids (default all ``[MASK]``)."""
        sc, b = self.sc_layout, len(prompt_ids)
        if len(feedback_ids) != b or prev_codes.shape[0] != b:
            raise ValueError(f"got {b} prompts, {len(feedback_ids)} feedbacks, {prev_codes.shape[0]} previous images")
        if target is None:
            target = torch.full((b, sc.num_image_tokens), sc.mask_id, dtype=torch.long)
        if tuple(target.shape) != (b, sc.num_image_tokens):
            raise ValueError(f"target must have shape [{b}, {sc.num_image_tokens}], got {tuple(target.shape)}")
        cond = torch.tensor([self.conditioning(p, f, c) for p, f, c in zip(prompt_ids, feedback_ids, prev_codes)])
        soi = torch.full((b, 1), sc.soi_id, dtype=torch.long)
        eoi = torch.full((b, 1), sc.eoi_id, dtype=torch.long)
        return torch.cat([cond, soi, target.to("cpu", torch.long), eoi], dim=1)

    def parse(self, ids: torch.Tensor) -> tuple[list[int], list[int], torch.Tensor, torch.Tensor]:
        """One sequence [L'] -> (prompt ids, feedback ids, previous codes [N], new-image token ids [N])."""
        lay, sc, n = self.layout, self.sc_layout, self.layout.num_image_tokens
        ids = [int(i) for i in ids]
        if len(ids) != sc.seq_len:
            raise ValueError(f"self-correction sequence has length {len(ids)}, expected {sc.seq_len}")
        t = sc.text_len
        sov, eov = t - n - 2, t - 1
        if ids[sov] != lay.special_id("<|sov|>") or ids[eov] != lay.special_id("<|eov|>") or ids[t] != sc.soi_id:
            raise ValueError(f"no <|sov|> at {sov}, <|eov|> at {eov} and <|soi|> at {t}: not a self-correction sequence")
        text = ids[:sov]
        start = next((k for k, i in enumerate(text) if i != lay.pad_id), len(text))
        text = text[start:]
        if text[:2] != [lay.t2i_id, lay.bos_id] or text[-1:] != [lay.eos_id]:
            raise ValueError("conditioning must read <|t2i|> bos prompt eos bos feedback eos")
        body = text[2:-1]
        cut = body.index(lay.eos_id)  # prompts and feedback never contain bos/eos (checked when building)
        if body[cut + 1: cut + 2] != [lay.bos_id]:
            raise ValueError("missing bos before the feedback")
        prev = torch.tensor(ids[sov + 1: eov]) - lay.image_offset
        return body[:cut], body[cut + 2:], prev, torch.tensor(ids[t + 1: t + 1 + n])

    def unconditional(self, batch_size: int) -> torch.Tensor:
        """[B, T'] the dropped conditioning: ``<|t2i|> bos eos`` left-padded (the pipeline's default uncond)."""
        sc = self.sc_layout
        text = [sc.pad_id] * (sc.text_len - 3) + [sc.t2i_id, sc.bos_id, sc.eos_id]
        return torch.tensor([text] * batch_size, dtype=torch.long)

    def pipeline(self, pipe: ShowoPipeline) -> ShowoPipeline:
        """A pipeline over :attr:`sc_layout` sharing ``pipe``'s model, tokenizer, VQ model and scheduler."""
        return ShowoPipeline(pipe.model, self.sc_layout, tokenizer=pipe.prompting.tokenizer if pipe.prompting else None,
                             vq_model=pipe.vq_model, scheduler=pipe.scheduler)


def _codes(codes: torch.Tensor, layout: TokenLayout, name: str) -> list[int]:
    values = [int(c) for c in torch.as_tensor(codes).reshape(-1)]
    if len(values) != layout.num_image_tokens:
        raise ValueError(f"{name} has {len(values)} codes, expected {layout.num_image_tokens}")
    bad = [c for c in values if not 0 <= c < layout.codebook_size]
    if bad:
        raise ValueError(f"{name} holds codes {bad[:5]} outside [0, {layout.codebook_size})")
    return values


def build_self_correction_batch(fmt: SelfCorrectionFormat, prompt_ids: Sequence[Sequence[int]],
                                feedback_ids: Sequence[Sequence[int]], bad_codes: torch.Tensor, good_codes: torch.Tensor,
                                generator: Optional[torch.Generator] = None,
                                cond_dropout_prob: float = 0.1) -> dict[str, torch.Tensor]:
    """A training batch for :func:`showo.loss.t2i_loss` with ``fmt.sc_layout``.

    The good image is masked as in t2i training (cosine ratio); with probability ``cond_dropout_prob`` a row's whole
    conditioning is replaced by the unconditional one. Returns ``input_ids`` [B, L'], ``attention_mask``
    [B, 1, L', L'] bool and ``labels`` [B, L'] (``<|soi|>``/``<|eoi|>`` copy targets kept, as in t2i).
    """
    sc = fmt.sc_layout
    image_ids, image_labels = mask_image_tokens(good_codes.cpu(), sc, generator)
    input_ids = fmt.build(prompt_ids, feedback_ids, bad_codes.cpu(), image_ids)
    drop = torch.rand(len(prompt_ids), generator=generator) < cond_dropout_prob
    if bool(drop.any()):
        input_ids[drop, : sc.text_len] = fmt.unconditional(int(drop.sum()))
    labels = torch.full_like(input_ids, IGNORE_INDEX)
    labels[:, sc.soi_pos] = sc.soi_id
    labels[:, sc.image_slice] = image_labels
    labels[:, -1] = sc.eoi_id
    return {"input_ids": input_ids, "attention_mask": t2i_attention_mask(input_ids, sc), "labels": labels}


def write_self_correction_dataset(directory: str | os.PathLike, prompts: Sequence[str], feedbacks: Sequence[str],
                                  bad_codes: torch.Tensor, good_codes: torch.Tensor) -> Path:
    """Write groups as ``groups.jsonl`` (``{"prompt", "feedback"}`` per line) + ``codes.safetensors`` (``bad``,
    ``good``: [M, N] int64 image codes of the rejected and the accepted image), atomically."""
    directory = Path(directory)
    m = len(prompts)
    if len(feedbacks) != m or tuple(bad_codes.shape[:1]) != (m,) or bad_codes.shape != good_codes.shape or bad_codes.ndim != 2:
        raise ValueError(f"need {m} feedbacks and [M={m}, N] bad/good codes, got {len(feedbacks)}, "
                         f"{tuple(bad_codes.shape)}, {tuple(good_codes.shape)}")
    # clone: safetensors refuses tensors that share memory (e.g. the same codes passed twice)
    codes = {"bad": bad_codes.to(torch.int64).clone(), "good": good_codes.to(torch.int64).clone()}
    atomic_write(directory / "codes.safetensors", lambda tmp: save_file(codes, tmp))
    atomic_write_text(directory / "groups.jsonl",
                      "".join(json.dumps({"prompt": p, "feedback": f}) + "\n" for p, f in zip(prompts, feedbacks)))
    return directory


def write_self_correction_groups(directory: str | os.PathLike, groups: Sequence[tuple[str, str, torch.Tensor,
                                                                                     torch.Tensor]],
                                 num_image_tokens: int) -> Path:
    """:func:`write_self_correction_dataset` of ``(prompt, feedback, bad codes [N], good codes [N])`` groups (none:
    an empty dataset of ``num_image_tokens`` codes per image)."""
    empty = torch.zeros(0, num_image_tokens, dtype=torch.long)
    return write_self_correction_dataset(directory, [g[0] for g in groups], [g[1] for g in groups],
                                         torch.stack([g[2] for g in groups]) if groups else empty,
                                         torch.stack([g[3] for g in groups]) if groups else empty)


class SelfCorrectionDataset:
    """(prompt, feedback, bad image, good image) groups for ``scripts/train_showo.py`` (``dataset=`` hook).

    Same protocol as :class:`showo.data.TokenizedT2IDataset`: ``len``, ``check(layout)`` and
    ``batch(indices, layout, tokenizer, generator)``; ``layout`` is the model's t2i layout and the batch is laid out
    in ``SelfCorrectionFormat(layout, max_feedback_length).sc_layout``. :func:`showo.loss.t2i_loss` with the t2i
    layout gives the same loss as with the longer layout (labels are ``-100`` over the whole conditioning), so the
    recipe needs no change. On disk: see :func:`write_self_correction_dataset`.
    """

    def __init__(self, directory: str | os.PathLike, max_feedback_length: int = 64, cond_dropout_prob: float = 0.1) -> None:
        directory = Path(directory)
        groups_path, codes_path = directory / "groups.jsonl", directory / "codes.safetensors"
        for path in (groups_path, codes_path):
            if not path.is_file():
                raise FileNotFoundError(f"dataset file not found: {path}")
        self.groups = [self._parse(line, f"{groups_path}:{k}")
                       for k, line in enumerate(groups_path.read_text().splitlines(), 1) if line.strip()]
        tensors = load_file(str(codes_path))
        missing = [k for k in ("bad", "good") if k not in tensors]
        if missing:
            raise ValueError(f"{codes_path}: missing tensors {missing} (found {sorted(tensors)})")
        self.bad, self.good = tensors["bad"].long(), tensors["good"].long()
        if self.bad.ndim != 2 or self.bad.shape != self.good.shape or self.bad.shape[0] != len(self.groups):
            raise ValueError(f"{codes_path}: bad {tuple(self.bad.shape)} / good {tuple(self.good.shape)} must both be "
                             f"[{len(self.groups)}, N]")
        self.source = str(directory)
        self.max_feedback_length = max_feedback_length
        self.cond_dropout_prob = cond_dropout_prob

    @staticmethod
    def _parse(line: str, where: str) -> dict:
        try:
            group = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{where}: invalid JSON ({err.msg})") from err
        for key in ("prompt", "feedback"):
            if not isinstance(group.get(key) if isinstance(group, dict) else None, str):
                raise ValueError(f"{where}: field {key!r} must be a string, got {str(group)[:80]}")
        return group

    def __len__(self) -> int:
        return len(self.groups)

    def check(self, layout: TokenLayout) -> None:
        for name, codes in (("bad", self.bad), ("good", self.good)):
            if codes.shape[1] != layout.num_image_tokens:
                raise ValueError(f"{self.source}: {name} has {codes.shape[1]} codes per image, the model expects "
                                 f"{layout.num_image_tokens}")
            if int(codes.min()) < 0 or int(codes.max()) >= layout.codebook_size:
                raise ValueError(f"{self.source}: {name} codes outside [0, {layout.codebook_size})")

    def format(self, layout: TokenLayout) -> SelfCorrectionFormat:
        return SelfCorrectionFormat(layout, self.max_feedback_length)

    def batch(self, indices: Sequence[int], layout: TokenLayout, tokenizer,
              generator: Optional[torch.Generator] = None) -> dict[str, torch.Tensor]:
        """``{input_ids, attention_mask, labels}`` in the self-correction layout for the groups ``indices``."""
        from showo.prompting import T2IPrompting

        prompting = T2IPrompting(tokenizer, layout)
        rows = list(indices)
        prompts = prompting.tokenize([self.groups[i]["prompt"] for i in rows])
        feedback = prompting.tokenize([self.groups[i]["feedback"] for i in rows])
        return build_self_correction_batch(self.format(layout), prompts, feedback, self.bad[rows], self.good[rows],
                                           generator, self.cond_dropout_prob)
