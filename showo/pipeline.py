"""Text-to-image pipeline: classifier-free guidance around the model, the scheduler's steps, callbacks (showo.md §9).

``pipeline(prompts)`` runs the whole loop; search strategies drive the same loop from outside, one step at a time::

    state = pipe.prepare(prompts, guidance_scale=1.75, num_inference_steps=18, generator=gens)
    while not state.done:
        out = pipe.step(state)          # out.sampled: the model's current guess of the whole image
        state.select(keep)              # prune / branch rows (beam search, PARM) between steps
    images = pipe.decode(state.final_tokens)

**Prefix cache.** In t2i the text prefix (``layout.text_len`` positions) attends only to itself, so its keys and
values are identical at every step. With ``use_prefix_cache=True`` they are computed once per call, and each step runs
the model on the ``N + 2`` image positions only (attending to the cached prefix). The keys are visited in the same order
as in the full-sequence forward, so the tokens match the plain path (``use_prefix_cache=False``), which recomputes the
whole sequence like the official code. Conditional and unconditional rows run in one batch. The unconditional prefix
(the ``''`` prompt, the same for every image) is computed once per pipeline and kept while the weights are unchanged
(keyed by its token ids, the model's dtype/device and every parameter's identity and in-place version counter, so an
optimizer step or ``load_state_dict`` invalidates it; :meth:`ShowoPipeline.clear_prefix_cache` drops it by hand).

**Codebook-only LM head.** Sampling reads the logits of the ``N`` image positions over the ``K`` image codes only
(showo.md §9.2 step 2), so the LM head computes exactly those ``N x K`` logits instead of ``L x V``.

**Fast mode** (``fast=FastMode(...)``, :mod:`showo.fast`; never the default): the transformer in bf16 and the step's
forward optionally compiled. It gives up the official tokens for speed; exact mode (``fast=None``) is unchanged.
"""
from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import torch

from common.seeding import clone_generator, clone_generators
from common.validate import ConfigError, Float, Int, validate

from .fast import FastMode
from .modeling import KV, ShowoModel
from .prompting import T2IPrompting, t2i_attention_mask
from .scheduler import Generator, MaskGITScheduler, StepOutput
from .tokens import TokenLayout


@dataclass
class StepRecord:
    step: int
    input_tokens: torch.Tensor  # [B, N] code space, ``layout.mask_id`` where masked: the tokens entering the step
    predicted_tokens: torch.Tensor  # [B, N] the model's full predicted image at this step (decode it to look at it)
    masking: torch.Tensor  # [B, N] bool, re-masked after the step


@dataclass
class SamplingState:
    """Everything one generation carries between steps; rows are images (``select`` prunes or branches them)."""

    prompts: list[str]
    cond_ids: torch.Tensor  # [B, L] current conditional sequences
    uncond_prefix: Optional[torch.Tensor]  # [B, T] text part of the unconditional sequences (CFG) or None
    mask: torch.Tensor  # [R, 1, L, L] bool, R = 2B with CFG ([cond; uncond]) else B
    tokens: torch.Tensor  # [B, N] code space, ``layout.mask_id`` where unknown
    num_steps: int
    guidance_scale: float
    generator: Generator
    temperatures: list[float] = field(default_factory=list)  # the scheduler's temperature of every step
    prefix_kv: Optional[list[KV]] = None  # per layer [R, H, T, D]
    step_index: int = 0
    last: Optional[StepOutput] = None
    trajectory: Optional[list[StepRecord]] = None
    forward_passes: int = 0  # model calls, counted per image row (CFG counts as one pass per image)
    cots: Optional[list[str]] = None  # the generator protocol's conditioning texts: Show-o writes none

    @property
    def batch_size(self) -> int:
        return self.cond_ids.shape[0]

    @property
    def done(self) -> bool:
        return self.step_index >= self.num_steps

    @property
    def final_tokens(self) -> torch.Tensor:
        """[B, N] the generated codes: the last step's full prediction."""
        if self.last is None:
            raise RuntimeError("no step has run yet")
        return self.last.sampled

    def model_inputs(self, rows: Optional[torch.Tensor] = None) -> tuple:
        """``(cond_ids, uncond_prefix, mask, prefix_kv)`` of ``rows`` (all rows when ``None``): what the model reads
        for them, the unconditional rows of mask and prefix cache included."""
        if rows is None:
            return self.cond_ids, self.uncond_prefix, self.mask, self.prefix_kv
        both = torch.cat([rows, rows + self.batch_size]) if self.uncond_prefix is not None else rows
        prefix_kv = None
        if self.prefix_kv is not None:
            d = both.to(self.prefix_kv[0][0].device)
            prefix_kv = [(k[d], v[d]) for k, v in self.prefix_kv]
        return (self.cond_ids[rows], None if self.uncond_prefix is None else self.uncond_prefix[rows],
                self.mask[both.to(self.mask.device)], prefix_kv)

    def select(self, rows: Sequence[int]) -> None:
        """Keep (and possibly repeat) rows in place. Repeated rows get copies of their generator's state."""
        idx = torch.as_tensor(list(rows), dtype=torch.long)
        self.prompts = [self.prompts[i] for i in idx.tolist()]
        self.cond_ids, self.uncond_prefix, self.mask, self.prefix_kv = self.model_inputs(idx)
        self.tokens = self.tokens[idx]
        if isinstance(self.generator, (list, tuple)):
            seen, gens = set(), []
            for i in idx.tolist():
                g = self.generator[i]
                if i in seen:
                    g = clone_generator(g)
                seen.add(i)
                gens.append(g)
            self.generator = gens
        if self.last is not None:
            self.last = StepOutput(*(t[idx] for t in (self.last.tokens, self.last.sampled, self.last.masking,
                                                      self.last.confidence)), mask_len=self.last.mask_len[idx])
        if self.trajectory is not None:
            self.trajectory = [StepRecord(r.step, r.input_tokens[idx], r.predicted_tokens[idx], r.masking[idx])
                               for r in self.trajectory]

    def split(self, rows: Sequence[int]) -> "SamplingState":
        """A new state holding copies of ``rows`` with copies of their generators; this one is unchanged. Stepped
        on, it draws what the rows would have drawn here (a pruned path kept to be resumed later)."""
        other = copy.copy(self)  # select() reassigns every field it touches, never mutates a shared tensor
        other.generator = clone_generators(self.generator)
        other.select(rows)
        return other


@dataclass
class PipelineOutput:
    tokens: torch.Tensor  # [B, N] image codes
    images: Optional[list] = None  # PIL images (output_type="pil") or a [B, 3, H, W] tensor in [0, 1] ("pt")
    trajectory: Optional[list[StepRecord]] = None
    forward_passes: int = 0
    cots: Optional[list[str]] = None  # the generator protocol's conditioning texts: Show-o writes none
    extras: dict = field(default_factory=dict)


# The sampling settings a Show-o generation takes besides its prompts and generators (``model.sampling`` in the configs;
# the official 256 px values are the defaults of :meth:`ShowoPipeline.prepare` and configs/sampler/showo.yaml).
SAMPLING_SETTINGS = (Float("guidance_scale", min=0), Int("num_inference_steps", min=1))
DEFAULT_SAMPLING = {"guidance_scale": 1.75, "num_inference_steps": 18}


class ShowoPipeline:
    """Show-o text-to-image sampling (official defaults at 256 px: guidance 1.75, 18 steps)."""

    @staticmethod
    def check_sampling(sampling: dict, where: str = "model.sampling") -> None:
        """:class:`~common.validate.ConfigError` naming every bad or unknown key of a sampling dict (recipes call it
        before writing anything)."""
        known = {s.key for s in SAMPLING_SETTINGS}
        unknown = sorted(set(sampling) - known)
        if unknown:
            raise ConfigError(f"{where}: unknown setting(s) {unknown}; a Show-o samples with {sorted(known)}")
        validate({**DEFAULT_SAMPLING, **sampling}, SAMPLING_SETTINGS, where)

    @staticmethod
    def num_steps(sampling: dict) -> int:
        """How many steps a generation with these sampling settings runs (search strategies plan with it)."""
        return int({**DEFAULT_SAMPLING, **sampling}["num_inference_steps"])

    @staticmethod
    def image_forward_passes(sampling: dict, steps: int) -> int:
        """Forward passes one image spends in its first ``steps`` steps: one per step (CFG rows not counted apart)."""
        return min(int(steps), ShowoPipeline.num_steps(sampling))

    @property
    def can_decode(self) -> bool:
        """Whether :meth:`decode` can make images (a pipeline without a VQ model makes tokens only)."""
        return self.vq_model is not None

    @property
    def device(self) -> torch.device:
        return self.model.device

    def __init__(self, model: ShowoModel, layout: TokenLayout, tokenizer=None, vq_model=None,
                 scheduler: Optional[MaskGITScheduler] = None, fast: FastMode | dict | None = None) -> None:
        """``fast``: a :class:`~showo.fast.FastMode` (or its config mapping) casts ``model`` to its dtype IN PLACE and
        may compile the step's forward; ``None`` (default) is exact mode."""
        self.model = model
        self.fast = FastMode.from_config(fast)
        # what every sampling step calls: the model itself, or its compiled forward in fast mode
        self._step_forward = model if self.fast is None else self.fast.apply(model)
        self.layout = layout
        self.prompting = T2IPrompting(tokenizer, layout) if tokenizer is not None else None
        self.vq_model = vq_model
        self.scheduler = scheduler or MaskGITScheduler()
        # unconditional text ids, dtype, device -> (weights version, per-layer KV [1, H, T, D]); see _uncond_kv
        self._uncond_kv_cache: dict[tuple, tuple[tuple, list[KV]]] = {}

    # ---------------------------------------------------------------------------------------------- setup
    def prepare(
        self,
        prompts: Sequence[str] | None = None,
        *,
        guidance_scale: float = DEFAULT_SAMPLING["guidance_scale"],
        num_inference_steps: int = DEFAULT_SAMPLING["num_inference_steps"],
        generator: Generator = None,
        input_ids: Optional[torch.Tensor] = None,
        uncond_input_ids: Optional[torch.Tensor] = None,
        use_prefix_cache: bool = True,
        return_trajectory: bool = False,
    ) -> SamplingState:
        """Build the sequences, mask and (optionally) prefix cache for a batch.

        Either ``prompts`` (tokenized with the pipeline's tokenizer) or pre-built ``input_ids`` [B, L] (token-id space;
        image positions hold ``[MASK]`` or known tokens for inpainting) with optional ``uncond_input_ids``.
        """
        lay = self.layout
        if input_ids is None:
            if self.prompting is None:
                raise ValueError("this pipeline has no tokenizer: pass input_ids instead of prompts")
            if not prompts:
                raise ValueError("prompts is empty")
            input_ids = self.prompting.sequences(prompts)
        if input_ids.shape[1] != lay.seq_len:
            raise ValueError(f"input_ids have length {input_ids.shape[1]}, the layout expects {lay.seq_len}")
        b = input_ids.shape[0]
        if isinstance(generator, (list, tuple)) and len(generator) != b:
            raise ValueError(f"got {len(generator)} generators for {b} prompts")
        device = self.model.device
        cond = input_ids.clone().to(device)
        image = cond[:, lay.image_slice]
        tokens = torch.where(image == lay.mask_id, lay.mask_id, image - lay.image_offset)
        uncond_prefix = None
        rows = cond
        if guidance_scale > 0:
            if uncond_input_ids is None:
                uncond_input_ids = torch.cat([_uncond_text(b, lay, device), cond[:, lay.text_len:]], dim=1)
            uncond_prefix = uncond_input_ids[:, : lay.text_len].to(device)
            rows = torch.cat([cond, torch.cat([uncond_prefix, cond[:, lay.text_len:]], dim=1)])
        mask = t2i_attention_mask(rows, lay)
        state = SamplingState(
            prompts=list(prompts) if prompts is not None else [""] * b, cond_ids=cond, uncond_prefix=uncond_prefix,
            mask=mask, tokens=tokens, num_steps=num_inference_steps, guidance_scale=guidance_scale,
            generator=list(generator) if isinstance(generator, (list, tuple)) else generator,
            temperatures=self.scheduler.temperatures(num_inference_steps), trajectory=[] if return_trajectory else None,
        )
        if use_prefix_cache:
            state.prefix_kv = self._prefix_kv(cond, mask, uncond_prefix)
        return state

    # ---------------------------------------------------------------------------------------------- prefix KV
    @torch.no_grad()
    def _prefix_kv(self, cond: torch.Tensor, mask: torch.Tensor, uncond_prefix: Optional[torch.Tensor]) -> list[KV]:
        """Per layer keys/values [R, H, T, D] of the text parts (R = 2B ``[cond; uncond]`` with CFG, else B).

        ``cond`` [B, L] ids, ``mask`` [R, 1, L, L], ``uncond_prefix`` [B, T] or None. The conditional prefixes depend on
        the prompts and are computed here; each distinct unconditional prefix comes from :meth:`_uncond_kv`. Every row
        is computed on its own tokens and mask, so the values are those of the batched full-sequence forward.
        """
        t, b = self.layout.text_len, cond.shape[0]
        kv = self.model(cond[:, :t], mask[:b, :, :t, :t], return_kv=True, logits_rows=slice(0, 0)).kv
        if uncond_prefix is None:
            return kv
        distinct, inverse = torch.unique(uncond_prefix, dim=0, return_inverse=True)
        parts = []
        for i in range(distinct.shape[0]):
            row = b + int((inverse == i).nonzero()[0, 0])  # a row of the batch mask with this unconditional text
            parts.append(self._uncond_kv(distinct[i], mask[row, :, :t, :t]))
        index = inverse.to(kv[0][0].device)
        return [(torch.cat([k, torch.cat([p[layer][0] for p in parts])[index]]),
                 torch.cat([v, torch.cat([p[layer][1] for p in parts])[index]]))
                for layer, (k, v) in enumerate(kv)]

    def _uncond_kv(self, text: torch.Tensor, mask: torch.Tensor) -> list[KV]:
        """Per layer keys/values [1, H, T, D] of one unconditional text part ``text`` [T] under ``mask`` [1, T, T].

        The text mask is a function of the text ids, so ids + weights determine the result: it is computed once and
        reused while the key and the weights version match (nothing is cached for inference-mode weights).
        """
        version = _weights_version(self.model)
        key = (tuple(text.tolist()), self.model.dtype, str(self.model.device))
        hit = self._uncond_kv_cache.get(key)
        if version is not None and hit is not None and hit[0] == version:
            return hit[1]
        kv = self.model(text[None], mask[None], return_kv=True, logits_rows=slice(0, 0)).kv
        if version is not None:
            stale = [k for k, (v, _) in self._uncond_kv_cache.items() if v != version]
            for k in stale:
                del self._uncond_kv_cache[k]
            self._uncond_kv_cache[key] = (version, kv)
        return kv

    def clear_prefix_cache(self) -> None:
        """Forget the cached unconditional prefix (needed only after changing weights without an in-place op)."""
        self._uncond_kv_cache.clear()

    # ---------------------------------------------------------------------------------------------- one step
    def guided_logits(self, state: SamplingState) -> torch.Tensor:
        """[B, N, K] float32 logits of the image codes after classifier-free guidance ``(1+w)·cond − w·uncond``.

        The LM head computes only the N image rows and the K code columns (the official code computes all L x V logits,
        guides them and slices the same N x K block out: the values are those of that block).

        Rows with the same sequence (prompt and image tokens) and the same unconditional prefix have the same logits:
        each distinct row is computed once and its logits repeated (step-level search's continuations of one kept
        state, or the paths of one prompt at the first step). Their sampled tokens still differ (one generator per
        row); ``forward_passes`` still counts every row.
        """
        key = state.cond_ids if state.uncond_prefix is None else torch.cat([state.cond_ids, state.uncond_prefix], 1)
        distinct, inverse = torch.unique(key, dim=0, return_inverse=True)
        if distinct.shape[0] == key.shape[0]:
            return self._guided_logits(*state.model_inputs(), state.guidance_scale)
        first = torch.full((distinct.shape[0],), key.shape[0], dtype=torch.long, device=inverse.device)
        first.scatter_reduce_(0, inverse, torch.arange(key.shape[0], device=inverse.device), reduce="amin")
        logits = self._guided_logits(*state.model_inputs(first), state.guidance_scale)
        return logits[inverse.to(logits.device)]

    def _guided_logits(self, cond_ids: torch.Tensor, uncond_prefix: Optional[torch.Tensor], mask: torch.Tensor,
                       prefix_kv: Optional[list[KV]], guidance_scale: float) -> torch.Tensor:
        """:meth:`guided_logits` of every row given: ``cond_ids`` [B, L], their unconditional prefixes, the mask
        [R, 1, L, L] and the text-prefix keys/values [R, ...], R = 2B with CFG (:meth:`SamplingState.model_inputs`)."""
        lay = self.layout
        codes = slice(lay.image_offset, lay.mask_id)  # [MASK] excluded, as in the official slice
        if prefix_kv is None:
            rows = cond_ids
            if uncond_prefix is not None:
                rows = torch.cat([rows, torch.cat([uncond_prefix, cond_ids[:, lay.text_len:]], dim=1)])
            logits = self._step_forward(rows, mask, logits_rows=lay.image_slice, logits_cols=codes).logits
        else:
            t = lay.text_len
            image = cond_ids[:, t:]  # <|soi|>, image tokens, <|eoi|>: shared by both branches
            rows = image if uncond_prefix is None else torch.cat([image, image])
            logits = self._step_forward(rows, mask[:, :, t:, :], prefix_kv=prefix_kv,
                                        logits_rows=slice(1, 1 + lay.num_image_tokens), logits_cols=codes).logits
        # the official forward returns float32 logits; guidance and sampling run in float32
        logits = logits.float()
        if uncond_prefix is not None:
            cond, uncond = logits.chunk(2)
            w = guidance_scale
            logits = (1 + w) * cond - w * uncond
        return logits

    @torch.no_grad()
    def step(self, state: SamplingState) -> StepOutput:
        if state.done:
            raise RuntimeError(f"all {state.num_steps} steps have run")
        lay = self.layout
        logits = self.guided_logits(state)
        out = self.scheduler.step(logits, state.tokens, lay.mask_id, step=state.step_index, num_steps=state.num_steps,
                                  temperature=state.temperatures[state.step_index], generator=state.generator)
        if state.trajectory is not None:
            state.trajectory.append(StepRecord(state.step_index, state.tokens.clone(), out.sampled.clone(), out.masking.clone()))
        state.tokens = out.tokens
        state.cond_ids[:, lay.image_slice] = torch.where(out.masking, lay.mask_id, out.sampled + lay.image_offset)
        state.forward_passes += state.batch_size
        state.step_index += 1
        state.last = out
        return out

    # ---------------------------------------------------------------------------------------------- whole call
    @torch.no_grad()
    def __call__(
        self,
        prompts: Sequence[str] | None = None,
        *,
        guidance_scale: float = DEFAULT_SAMPLING["guidance_scale"],
        num_inference_steps: int = DEFAULT_SAMPLING["num_inference_steps"],
        generator: Generator = None,
        callback_on_step_end: Optional[Callable[["ShowoPipeline", SamplingState, StepOutput], None]] = None,
        return_trajectory: bool = False,
        output_type: str = "pil",
        use_prefix_cache: bool = True,
        input_ids: Optional[torch.Tensor] = None,
        uncond_input_ids: Optional[torch.Tensor] = None,
    ) -> PipelineOutput:
        """Generate images. ``generator``: one ``torch.Generator`` (official draws, official order) or one per prompt.

        ``callback_on_step_end(pipeline, state, step_output)`` runs after every step; it may call ``state.select``.
        ``output_type``: ``"pil"``, ``"pt"`` ([B, 3, H, W] in [0, 1]) or ``"tokens"`` (no decoding).
        """
        if output_type not in ("pil", "pt", "tokens"):
            raise ValueError(f"output_type must be 'pil', 'pt' or 'tokens', got {output_type!r}")
        state = self.prepare(prompts, guidance_scale=guidance_scale, num_inference_steps=num_inference_steps,
                             generator=generator, input_ids=input_ids, uncond_input_ids=uncond_input_ids,
                             use_prefix_cache=use_prefix_cache, return_trajectory=return_trajectory)
        while not state.done:
            out = self.step(state)
            if callback_on_step_end is not None:
                callback_on_step_end(self, state, out)
        tokens = state.final_tokens
        images = None if output_type == "tokens" else self.decode(tokens, output_type)
        return PipelineOutput(tokens=tokens, images=images, trajectory=state.trajectory, forward_passes=state.forward_passes)

    @torch.no_grad()
    def decode(self, tokens: torch.Tensor, output_type: str = "pil"):
        """Codes [B, N] -> PIL images (or a [B, 3, H, W] float tensor in [0, 1]) through the VQ model.

        One image per VQ call (:func:`showo.magvit.decode_codes`, the project's one decode path).
        """
        if self.vq_model is None:
            raise ValueError("this pipeline has no vq_model: use output_type='tokens'")
        from .magvit import decode_codes  # local import: decoding is optional for token-only users

        return decode_codes(self.vq_model, tokens.clamp(0, self.layout.codebook_size - 1), self.layout.grid,
                            output_type)

    # ---------------------------------------------------------------------------------------------- training
    def image_logprobs(self, prompts: Sequence[str], tokens: torch.Tensor, *,
                       generator: Generator = None) -> torch.Tensor:
        """[B, N] log-probs (with gradients) of the codes ``tokens`` at the positions of one masked corruption per
        image, 0 elsewhere: the row sum is one draw of the DPO quantity ``ell`` of :mod:`showo.logprob` (a
        Monte-Carlo estimate: Show-o has no exact image likelihood). ``generator``: one CPU ``torch.Generator``
        per image, drawing its mask (cosine schedule); no prompt dropout, no ``<|soi|>``/``<|eoi|>`` terms."""
        from .logprob import MaskingConfig, draw_masked_batch
        from .loss import IGNORE_INDEX

        if not isinstance(generator, (list, tuple)) or len(generator) != len(prompts):
            raise ValueError("Show-o's image log-probs draw a mask per image: pass one torch.Generator per prompt")
        if self.prompting is None:
            raise ValueError("this pipeline has no tokenizer to encode the prompts")
        lay = self.layout
        batch = draw_masked_batch(self.prompting.tokenize(list(prompts)), tokens.cpu().long(), lay, list(generator),
                                  MaskingConfig(cond_dropout_prob=0.0, count_special=False)).to(self.device)
        t, n = lay.text_len, lay.num_image_tokens
        logits = self.model(batch.input_ids, batch.attention_mask, logits_rows=slice(t + 1, t + 1 + n)).logits.float()
        labels = batch.labels[:, lay.image_slice]  # [B, N] token ids where masked, IGNORE_INDEX elsewhere
        scored = labels != IGNORE_INDEX
        safe = torch.where(scored, labels, torch.zeros_like(labels))
        picked = logits.gather(-1, safe[..., None])[..., 0] - torch.logsumexp(logits, dim=-1)
        return picked * scored


def _uncond_text(batch: int, layout: TokenLayout, device) -> torch.Tensor:
    """Text part of the unconditional prompt ``''``: ``[PAD]*(T-3), <|t2i|>, bos, eos``."""
    from .prompting import text_part

    return torch.tensor([text_part([], layout)] * batch, dtype=torch.long, device=device)


def _weights_version(model: torch.nn.Module) -> Optional[tuple]:
    """Identity and in-place version counter of every parameter and buffer (changes when the weights may have).

    ``None`` for inference-mode tensors, which have no version counter.
    """
    try:
        return tuple((t.data_ptr(), t._version) for t in itertools.chain(model.parameters(), model.buffers()))
    except RuntimeError:
        return None
