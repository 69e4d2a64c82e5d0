"""Janus-Pro text-to-image sampling, owned by the project (reference t2i_r1.md §4, §11.3).

Each image token is one KV-cached forward of the LLM over the ``[cond; uncond]`` rows, the generation head on the
last hidden state, guidance ``logits = u + w (c - u)`` (w = 5), ``softmax(logits / T)`` (T = 1, **no top-k**:
transformers' generation config would otherwise apply its default top-k 50) and a multinomial draw; the drawn code's
generation embedding (``gen_aligner(gen_embed(code))``) is fed to both rows. This is the official sampler
(``generation_inference.py``) and the loop of transformers' ``generate(generation_mode="image")``; the tests check
token identity with the latter.

Search strategies drive the same loop from outside, like :mod:`showo.pipeline`::

    state = pipe.prepare(prompts, rows_per_step=4, generator=gens)
    while not state.done:
        out = pipe.step(state)          # out.sampled: the predicted image (generated rows + fill), [B, N]
        state.select(keep)              # prune / branch rows between steps
    images = pipe.decode(state.final_tokens)

**Steps.** One step generates ``rows_per_step`` raster rows (``K * cols`` tokens; the last step may hold fewer rows),
so there are ``ceil(rows / K)`` steps.

**Predicted image.** After a step only the top rows exist. The predicted image fills the rows below with a copy of the
last generated row (``fill="last_row"``, default) or with one fixed code (``fill=<int>``). Why not the model's own
continuation: an argmax roll-out costs the remaining forwards of the whole image at every step. Why the last row: it
costs nothing, shows only codes the model actually sampled, and keeps the decoder's input made of neighbouring
codes, whereas a fixed code is an arbitrary texture whose decoded colour depends on the codebook. Judges should
know which rows are real: ``StepOutput.masking`` marks the filled positions.

**Randomness.** ``generator`` is one ``torch.Generator`` (one ``multinomial`` over the batch per token, the draws of
the official code and of transformers for the same seed) or a list with one generator per image (each image draws
from its own, so an image never depends on its batch).

**Precision.** Guidance and softmax run in the model's dtype, as in the official code and transformers (bfloat16 at
real scale); ``upcast_logits=True`` runs them in float32 instead. Log-probabilities are computed in at least float32.

**Semantic CoT inside the generator.** A pipeline built with ``cot=SemanticCoT(...)`` writes a plan for every image in
:meth:`JanusPipeline.prepare` (drawn from that image's own generator, which then draws its codes) and conditions the
image on ``"{prompt}. {plan}"``; ``state.cots`` keeps the plans. Search strategies and recipes therefore drive a
CoT-Janus exactly like a plain one (the generator protocol, :mod:`common.generator`). ``prepare(..., cots=[...])``
conditions on given texts instead (no plan is sampled): PARM++ regenerates a Janus image from the prompt and the
judge's explanation that way.

**Decoding.** One image per decoder call (batch-invariant pixels, the project's one decode path). The decoder is the
checkpoint's own VQ model unless the pipeline is given another (``decoder(codes [B, N], output_type)``): the shapes
world's tiny Janus draws MAGVIT-v2 codes and decodes them with the shapes MAGVIT, like the tiny Show-o.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence, Union

import torch

from common.seeding import clone_generator, clone_generators
from common.validate import ConfigError, Float, Int, validate

from .draw import Generator, draw, top_k_filter
from .layout import UNKNOWN, JanusLayout
from .prompting import JANUS_PRO, ChatTemplate, check_image_prompt, encode, image_prompt, image_rows, positions



@dataclass
class StepRecord:
    step: int
    input_tokens: torch.Tensor  # [B, N] raster entering the step, UNKNOWN where not generated yet
    predicted_tokens: torch.Tensor  # [B, N] predicted image after the step (generated rows + fill)
    masking: torch.Tensor  # [B, N] bool: positions still not generated after the step (filled)


@dataclass
class StepOutput:
    tokens: torch.Tensor  # [B, N] raster after the step, UNKNOWN where not generated yet
    sampled: torch.Tensor  # [B, N] predicted image: generated rows + fill (decode it to look at it)
    masking: torch.Tensor  # [B, N] bool: filled (not generated) positions of ``sampled``
    new_tokens: torch.Tensor  # [B, n] codes drawn in this step
    logprobs: torch.Tensor  # [B, n] log-prob of each drawn code under the distribution it was drawn from
    cond_logprobs: torch.Tensor  # [B, n] log-prob under the conditional branch alone (T = 1, no CFG, no top-k)
    rows_done: int  # raster rows generated so far


@dataclass
class SamplingState:
    """Everything one generation carries between steps; rows are images (``select`` prunes or branches them).

    LM rows: ``R = 2B`` (``[cond; uncond]``) with guidance, else ``B``.
    """

    prompts: list[str]
    prompt_ids: torch.Tensor  # [B, P] left-padded conditional prompt ids (ending with <begin_of_image>)
    prompt_mask: torch.Tensor  # [B, P]
    rows_mask: torch.Tensor  # [R, P + t] attention mask of the LM rows so far
    next_embeds: torch.Tensor  # [R, s, D] inputs of the next forward (the prompts, then the last code)
    next_positions: torch.Tensor  # [R, s]
    cache: object  # transformers DynamicCache over the R rows
    tokens: torch.Tensor  # [B, N] UNKNOWN where not generated yet
    logprobs: torch.Tensor  # [B, N] per-code log-probs of the sampling distribution (0 where not generated)
    cond_logprobs: torch.Tensor  # [B, N] per-code conditional log-probs
    rows_per_step: int
    num_steps: int
    guidance_scale: Optional[float]
    temperature: float
    top_k: Optional[int]
    generator: Generator
    num_generated: int = 0
    step_index: int = 0
    last: Optional[StepOutput] = None
    trajectory: Optional[list[StepRecord]] = None
    forward_passes: int = 0  # LM forwards counted per image (one per code or CoT token; the CFG row not apart)
    cots: Optional[list[str]] = None  # the text each image is conditioned on besides its prompt (semantic CoT)
    cot_passes: Optional[list[int]] = None  # per image: the LM forwards its plan cost (in forward_passes)

    @property
    def batch_size(self) -> int:
        return self.tokens.shape[0]

    @property
    def done(self) -> bool:
        return self.step_index >= self.num_steps

    @property
    def final_tokens(self) -> torch.Tensor:
        """[B, N] the generated codes (all steps must have run)."""
        if not self.done:
            raise RuntimeError(f"only {self.step_index} of {self.num_steps} steps have run")
        return self.tokens

    def _lm_rows(self, idx: torch.Tensor) -> torch.Tensor:
        return torch.cat([idx, idx + self.batch_size]) if self.guidance_scale is not None else idx

    def select(self, rows: Sequence[int]) -> None:
        """Keep (and possibly repeat) image rows in place. Repeated rows get copies of their generator's state."""
        idx = torch.as_tensor(list(rows), dtype=torch.long)
        lm = self._lm_rows(idx).to(self.rows_mask.device)
        self.cache.reorder_cache(lm)
        self.rows_mask, self.next_embeds, self.next_positions = (
            t[lm] for t in (self.rows_mask, self.next_embeds, self.next_positions))
        d = idx.to(self.tokens.device)
        self.prompts = [self.prompts[i] for i in idx.tolist()]
        if self.cots is not None:
            self.cots = [self.cots[i] for i in idx.tolist()]
        if self.cot_passes is not None:
            self.cot_passes = [self.cot_passes[i] for i in idx.tolist()]
        self.prompt_ids, self.prompt_mask = self.prompt_ids[d], self.prompt_mask[d]
        self.tokens, self.logprobs, self.cond_logprobs = self.tokens[d], self.logprobs[d], self.cond_logprobs[d]
        if isinstance(self.generator, (list, tuple)):
            seen, gens = set(), []
            for i in idx.tolist():
                gens.append(clone_generator(self.generator[i]) if i in seen else self.generator[i])
                seen.add(i)
            self.generator = gens
        if self.last is not None:
            o = self.last
            self.last = StepOutput(o.tokens[d], o.sampled[d], o.masking[d], o.new_tokens[d], o.logprobs[d],
                                   o.cond_logprobs[d], o.rows_done)
        if self.trajectory is not None:
            self.trajectory = [StepRecord(r.step, r.input_tokens[d], r.predicted_tokens[d], r.masking[d])
                               for r in self.trajectory]

    def split(self, rows: Sequence[int]) -> "SamplingState":
        """A new state holding copies of ``rows`` (their KV-cache rows, plans and copies of their generators); this
        one is unchanged. Stepped on, it draws what the rows would have drawn here (a pruned path kept to be resumed
        later). Only the selected rows' cache is copied (each cache layer re-indexes into new tensors)."""
        other = copy.copy(self)
        other.cache = copy.copy(self.cache)
        other.cache.layers = [copy.copy(layer) for layer in self.cache.layers]
        other.generator = clone_generators(self.generator)
        other.select(rows)
        return other


@dataclass
class PipelineOutput:
    tokens: torch.Tensor  # [B, N] image codes
    images: Optional[object] = None  # PIL images ("pil") or a [B, 3, H, W] tensor in [0, 1] ("pt")
    logprobs: Optional[torch.Tensor] = None  # [B, N] log-probs of the sampling distribution
    cond_logprobs: Optional[torch.Tensor] = None  # [B, N] conditional-branch log-probs
    prompt_ids: Optional[torch.Tensor] = None  # [B, P] left-padded image-prompt ids
    prompt_mask: Optional[torch.Tensor] = None
    trajectory: Optional[list[StepRecord]] = None
    forward_passes: int = 0
    cots: Optional[list[str]] = None  # per image: the semantic CoT it was conditioned on (None: no CoT)
    extras: dict = field(default_factory=dict)


# The sampling settings of a Janus-Pro generation besides prompts and generators (``model.sampling``; the official values
# are the defaults of :meth:`JanusPipeline.prepare` and configs/sampler/janus.yaml). ``rows_per_step`` only sets how
# often search strategies look at the image: the codes drawn do not depend on it.
SAMPLING_SETTINGS = (Float("guidance_scale", min=0, optional=True), Float("temperature", min=1e-6),
                     Int("top_k", min=1, optional=True), Int("rows_per_step", min=1))
DEFAULT_SAMPLING = {"guidance_scale": 5.0, "temperature": 1.0, "top_k": None, "rows_per_step": 1}
ImageDecoder = Callable[[torch.Tensor, str], object]  # (codes [B, N], output_type) -> PIL list or [B, 3, H, W]


class JanusPipeline:
    """Janus-Pro text-to-image sampling (official defaults: guidance 5, temperature 1, no top-k).

    ``cot``: a :class:`janus.cot.SemanticCoT` (same model) that writes a plan before every image (see the module
    doc); ``decoder``: codes -> images in place of the checkpoint's VQ model.
    """

    def __init__(self, model, layout: JanusLayout, tokenizer=None, *, template: ChatTemplate = JANUS_PRO,
                 fill: Union[str, int] = "last_row", upcast_logits: bool = False, cot=None,
                 decoder: Optional[ImageDecoder] = None) -> None:
        if fill != "last_row" and not (isinstance(fill, int) and 0 <= fill < layout.codebook_size):
            raise ValueError(f"fill must be 'last_row' or a code in [0, {layout.codebook_size}), got {fill!r}")
        if cot is not None and tokenizer is None:
            raise ValueError("a pipeline with a semantic CoT needs a tokenizer")
        self.model = model
        self.layout = layout
        self.tokenizer = tokenizer
        self.template = template
        self.fill = fill
        self.upcast_logits = upcast_logits
        self.cot = cot
        self.decoder = decoder

    # ---------------------------------------------------------------------------------------------- protocol
    @staticmethod
    def check_sampling(sampling: dict, where: str = "model.sampling") -> None:
        """:class:`~common.validate.ConfigError` naming every bad or unknown key of a sampling dict."""
        known = {s.key for s in SAMPLING_SETTINGS}
        unknown = sorted(set(sampling) - known)
        if unknown:
            raise ConfigError(f"{where}: unknown setting(s) {unknown}; a Janus-Pro samples with {sorted(known)}")
        validate({**DEFAULT_SAMPLING, **sampling}, SAMPLING_SETTINGS, where)

    def num_steps(self, sampling: dict) -> int:
        """Steps of a generation: ``ceil(rows / rows_per_step)`` (search strategies plan with it)."""
        return math.ceil(self.layout.grid[0] / int({**DEFAULT_SAMPLING, **sampling}["rows_per_step"]))

    def image_forward_passes(self, sampling: dict, steps: int) -> int:
        """LM forwards one image spends on its codes in its first ``steps`` steps (one per code; a CoT's tokens come on
        top, once per image)."""
        k = int({**DEFAULT_SAMPLING, **sampling}["rows_per_step"])
        return min(self.layout.grid[0], steps * k) * self.layout.grid[1]

    @property
    def can_decode(self) -> bool:
        """Janus-Pro always carries an image decoder (its VQ model, or the one it was given)."""
        return True

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def prompt_ids(self, prompts: Sequence[str]) -> list[list[int]]:
        """Image-prompt ids of raw prompts: chat template, BOS, text, ``<begin_of_image>``."""
        if self.tokenizer is None:
            raise ValueError("this pipeline has no tokenizer: pass input_ids instead of prompts")
        return [encode(self.tokenizer, self.layout, self.template.render(p), image=True) for p in prompts]

    def image_prompt_ids(self, prompts: Sequence[str], cots: Optional[Sequence[Optional[str]]] = None
                         ) -> list[list[int]]:
        """Image-prompt ids of ``"{prompt}. {cot}"`` (T2I-R1's form; the prompt alone where the CoT is None)."""
        if cots is None:
            return self.prompt_ids(prompts)
        if len(cots) != len(prompts):
            raise ValueError(f"{len(prompts)} prompts but {len(cots)} CoTs")
        return self.prompt_ids([image_prompt(p, c) for p, c in zip(prompts, cots)])

    # ---------------------------------------------------------------------------------------------- setup
    @torch.no_grad()
    def prepare(self, prompts: Sequence[str] | None = None, *, guidance_scale: Optional[float] = 5.0,
                temperature: float = 1.0, top_k: Optional[int] = None, rows_per_step: int = 1,
                generator: Generator = None, input_ids: Optional[Sequence[Sequence[int]]] = None,
                cots: Optional[Sequence[Optional[str]]] = None, return_trajectory: bool = False) -> SamplingState:
        """Build the rows of a batch. Either raw ``prompts`` (rendered with the pipeline's chat template) or
        ``input_ids``: one unpadded id list per image, ``[bos, ..., <begin_of_image>]``.

        With a semantic CoT (``self.cot``) and raw prompts, a plan is sampled per image first (each from the image's
        own generator); ``cots`` gives the texts instead (``"{prompt}. {cot}"``, no plan sampled).
        ``guidance_scale=None`` runs the conditional rows only (no guidance); any number w runs ``u + w (c - u)``.
        """
        from transformers import DynamicCache

        cot_passes, cot_rows = 0, None
        if input_ids is None:
            if not prompts:
                raise ValueError("prompts is empty")
            if isinstance(generator, (list, tuple)) and len(generator) != len(prompts):
                raise ValueError(f"got {len(generator)} generators for {len(prompts)} prompts")
            if cots is None and self.cot is not None:
                plans = self.cot.sample(prompts, generator=generator)
                cots, cot_passes = plans.cots, plans.sample.forward_passes
                cot_rows = [int(n) for n in plans.sample.completion_mask.sum(1).tolist()]
            input_ids = self.image_prompt_ids(prompts, cots)
        elif cots is not None:
            raise ValueError("pass cots with prompts, not with input_ids")
        for i, ids in enumerate(input_ids):
            check_image_prompt(ids, self.layout, i)
        b, lay = len(input_ids), self.layout
        if isinstance(generator, (list, tuple)) and len(generator) != b:
            raise ValueError(f"got {len(generator)} generators for {b} prompts")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if top_k is not None and top_k < 1:
            raise ValueError(f"top_k must be None or >= 1, got {top_k}")
        if rows_per_step < 1:
            raise ValueError(f"rows_per_step must be >= 1, got {rows_per_step}")
        device = self.device
        ids, mask = image_rows(input_ids, lay.pad_id, guidance_scale is not None, device)
        n = lay.num_image_tokens
        zeros = torch.zeros((b, n), dtype=torch.promote_types(self.model.dtype, torch.float32), device=device)
        return SamplingState(
            prompts=list(prompts) if prompts is not None else [""] * b, prompt_ids=ids[:b], prompt_mask=mask[:b],
            rows_mask=mask, next_embeds=self.model.get_input_embeddings()(ids), next_positions=positions(mask),
            cache=DynamicCache(config=self.model.config.text_config),
            tokens=torch.full((b, n), UNKNOWN, dtype=torch.long, device=device), logprobs=zeros,
            cond_logprobs=zeros.clone(), rows_per_step=rows_per_step, num_steps=math.ceil(lay.grid[0] / rows_per_step),
            guidance_scale=guidance_scale, temperature=temperature, top_k=top_k,
            generator=list(generator) if isinstance(generator, (list, tuple)) else generator,
            trajectory=[] if return_trajectory else None, forward_passes=cot_passes,
            cots=list(cots) if cots is not None else None, cot_passes=cot_rows,
        )

    # ---------------------------------------------------------------------------------------------- one code
    def _next_code(self, state: SamplingState) -> None:
        """One LM forward over the rows, guidance, one draw per image; feeds the code back to both rows."""
        out = self.model.model.language_model(
            inputs_embeds=state.next_embeds, attention_mask=state.rows_mask, position_ids=state.next_positions,
            past_key_values=state.cache, use_cache=True)
        logits = self.model.model.generation_head(out.last_hidden_state[:, -1])  # [R, V]
        if self.upcast_logits:
            logits = logits.float()
        b = state.batch_size
        cond = logits[:b]
        guided = cond
        if state.guidance_scale is not None:
            uncond = logits[b:]
            guided = uncond + state.guidance_scale * (cond - uncond)
        scores = guided / state.temperature
        if state.top_k is not None:
            scores = top_k_filter(scores, state.top_k)
        code = draw(torch.softmax(scores, dim=-1), state.generator)  # [B]
        t = state.num_generated
        lp_dtype = state.logprobs.dtype
        state.tokens[:, t] = code
        state.logprobs[:, t] = torch.log_softmax(scores.to(lp_dtype), -1).gather(-1, code[:, None])[:, 0]
        state.cond_logprobs[:, t] = torch.log_softmax(cond.to(lp_dtype), -1).gather(-1, code[:, None])[:, 0]
        rows = torch.cat([code, code]) if state.guidance_scale is not None else code
        state.next_embeds = self.model.prepare_embeddings_for_image_generation(rows)[:, None]
        state.next_positions = state.next_positions[:, -1:] + 1
        state.rows_mask = torch.cat([state.rows_mask, state.rows_mask.new_ones((state.rows_mask.shape[0], 1))], 1)
        state.num_generated += 1
        state.forward_passes += b

    def predicted(self, tokens: torch.Tensor, rows_done: int) -> torch.Tensor:
        """[B, N] the partial raster with rows ``rows_done:`` filled by the pipeline's ``fill`` policy."""
        h, w = self.layout.grid
        grid = tokens.view(-1, h, w).clone()
        if rows_done < h:
            if self.fill == "last_row":
                if rows_done < 1:
                    raise ValueError("the last_row fill needs at least one generated row")
                grid[:, rows_done:] = grid[:, rows_done - 1: rows_done]
            else:
                grid[:, rows_done:] = self.fill
        return grid.view(tokens.shape)

    @torch.no_grad()
    def step(self, state: SamplingState) -> StepOutput:
        """Generate the next ``rows_per_step`` raster rows of every image."""
        if state.done:
            raise RuntimeError(f"all {state.num_steps} steps have run")
        h, w = self.layout.grid
        rows_done = min(h, (state.step_index + 1) * state.rows_per_step)
        start = state.num_generated
        before = state.tokens.clone() if state.trajectory is not None else None
        while state.num_generated < rows_done * w:
            self._next_code(state)
        masking = torch.zeros_like(state.tokens, dtype=torch.bool)
        masking[:, rows_done * w:] = True
        new = slice(start, state.num_generated)
        out = StepOutput(tokens=state.tokens.clone(), sampled=self.predicted(state.tokens, rows_done),
                         masking=masking, new_tokens=state.tokens[:, new].clone(),
                         logprobs=state.logprobs[:, new].clone(), cond_logprobs=state.cond_logprobs[:, new].clone(),
                         rows_done=rows_done)
        if state.trajectory is not None:
            state.trajectory.append(StepRecord(state.step_index, before, out.sampled.clone(), masking.clone()))
        state.step_index += 1
        state.last = out
        return out

    # ---------------------------------------------------------------------------------------------- whole call
    @torch.no_grad()
    def __call__(self, prompts: Sequence[str] | None = None, *, guidance_scale: Optional[float] = 5.0,
                 temperature: float = 1.0, top_k: Optional[int] = None, rows_per_step: int = 1,
                 generator: Generator = None,
                 callback_on_step_end: Optional[Callable[["JanusPipeline", SamplingState, StepOutput], None]] = None,
                 return_trajectory: bool = False, output_type: str = "pil",
                 input_ids: Optional[Sequence[Sequence[int]]] = None,
                 cots: Optional[Sequence[Optional[str]]] = None) -> PipelineOutput:
        """Generate images. ``callback_on_step_end(pipeline, state, step_output)`` runs after every step and may call
        ``state.select``. ``output_type``: ``"pil"``, ``"pt"`` ([B, 3, H, W] in [0, 1]) or ``"tokens"``."""
        if output_type not in ("pil", "pt", "tokens"):
            raise ValueError(f"output_type must be 'pil', 'pt' or 'tokens', got {output_type!r}")
        state = self.prepare(prompts, guidance_scale=guidance_scale, temperature=temperature, top_k=top_k,
                             rows_per_step=rows_per_step, generator=generator, input_ids=input_ids, cots=cots,
                             return_trajectory=return_trajectory)
        while not state.done:
            out = self.step(state)
            if callback_on_step_end is not None:
                callback_on_step_end(self, state, out)
        tokens = state.final_tokens
        images = None if output_type == "tokens" else self.decode(tokens, output_type)
        return PipelineOutput(tokens=tokens, images=images, logprobs=state.logprobs, cond_logprobs=state.cond_logprobs,
                              prompt_ids=state.prompt_ids, prompt_mask=state.prompt_mask, trajectory=state.trajectory,
                              forward_passes=state.forward_passes, cots=state.cots)

    @torch.no_grad()
    def decode(self, tokens: torch.Tensor, output_type: str = "pil"):
        """Codes [B, N] -> PIL images, or a [B, 3, H, W] float tensor in [0, 1] (``"pt"``), one image per decoder call.

        With the checkpoint's VQ model the PIL conversion is the official one: ``clip((x + 1) / 2 * 255, 0, 255)``
        truncated to uint8; a given ``decoder`` converts itself.
        """
        if output_type not in ("pil", "pt"):
            raise ValueError(f"output_type must be 'pil' or 'pt', got {output_type!r}")
        if tokens.ndim == 2 and tokens.shape[0] == 0:  # no image asked for (e.g. no path awaits a judge)
            return [] if output_type == "pil" else torch.empty(0, 3, self.layout.image_size, self.layout.image_size)
        if tokens.ndim != 2 or tokens.shape[-1] != self.layout.num_image_tokens:
            raise ValueError(f"expected [B, {self.layout.num_image_tokens}] codes, got {tuple(tokens.shape)}")
        if ((tokens < 0) | (tokens >= self.layout.codebook_size)).any():
            raise ValueError("codes outside the codebook (UNKNOWN positions must be filled before decoding)")
        if self.decoder is not None:
            return self.decoder(tokens, output_type)
        vq = self.model.model.vqmodel
        codes = tokens.to(self.device).long()
        pixels = torch.cat([vq.decode(c[None]) for c in codes]).float()
        if output_type == "pt":
            return ((pixels + 1) / 2).clamp(0, 1)
        from PIL import Image

        arr = ((pixels + 1) / 2 * 255).clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        return [Image.fromarray(a) for a in arr]

    # ---------------------------------------------------------------------------------------------- training
    def image_logprobs(self, prompts: Sequence[str], tokens: torch.Tensor, *, generator: Generator = None,
                       cots: Optional[Sequence[Optional[str]]] = None, guidance_scale: Optional[float] = None,
                       input_ids: Optional[Sequence[Sequence[int]]] = None) -> torch.Tensor:
        """[B, N] teacher-forced log-probs of given codes after ``"{prompt}. {cot}"`` (or ``input_ids``), with
        gradients (:func:`janus.logprob.image_logprobs`; conditional branch unless ``guidance_scale``). Exact, so
        ``generator`` is not used (it is part of the generator protocol: Show-o's estimate draws masks)."""
        from .logprob import image_logprobs

        if input_ids is None:
            input_ids = self.image_prompt_ids(prompts, cots)
        return image_logprobs(self.model, input_ids, tokens, pad_id=self.layout.pad_id, guidance_scale=guidance_scale,
                              upcast_logits=self.upcast_logits)
