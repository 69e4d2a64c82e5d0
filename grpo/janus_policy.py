"""BiCoT-GRPO's policy: Janus-Pro writing a semantic CoT, then the image tokens (t2i_r1.md §3-§5, §15.1).

Rollout of ``B = n x G`` rows (no gradient, eval mode; one ``torch.Generator`` per row drives first the CoT, then the
image):

1. **semantic CoT** (:class:`janus.cot.SemanticCoT`): the reasoning prompt, a plan sampled at T = 1, top-k 50, at most
   1024 tokens, counted through its first EOS (§3.3);
2. **token CoT** (:class:`janus.pipeline.JanusPipeline`): the image prompt ``"{prompt}. {cot}"`` and 576 codes at CFG
   5, T = 1, no top-k (§4.2), decoded for the rewards.

Teacher-forced log-probs (§5.1, with gradient): the CoT through ``lm_head`` after the reasoning prompt
(:func:`janus.logprob.text_logprobs`), the codes through the generation head after the image prompt
(:func:`janus.logprob.image_logprobs`), of the conditional branch alone by default (§5.2; ``guided_logprobs=True``
scores the CFG distribution the codes were drawn from).

Variants (the miniature's ablations): ``modalities=("image",)`` with ``cot=None`` is **token-only** GRPO (no plan, the
image prompt is the raw prompt); ``modalities=("text",)`` is **semantic-only** GRPO (plans are trained, the image
tokens are sampled but get no gradient).

Trainable parameters (§5.4): the official freeze list ``vision_model*``, ``aligner*``, ``gen*`` in transformers'
names (:data:`OFFICIAL_FROZEN`): only the language model (decoder, text embeddings, ``lm_head``) trains, and the image
tokens change only through its hidden states. Without a text modality ``lm_head`` receives no gradient and is frozen
too (DDP refuses trainable parameters that a step never uses).

Rows are left-padded with their own position ids in sampling and scoring (:mod:`janus.prompting`), and every scored
micro-batch is trimmed to its own padding (:func:`grpo.policy.trim_left`), so a row's log-probs do not depend on the
rows it was rolled out or scored with.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Optional

import torch

from grpo.policy import Samples, pad_to, trim_left
from grpo.rollout import Rollout
from janus.checkpoint import JanusBundle, build_strict, save_hf
from janus.cot import SemanticCoT
from janus.logprob import image_logprobs, text_logprobs
from janus.prompting import chat_template, encode

__all__ = ["JanusGRPOPolicy", "OFFICIAL_FROZEN"]

# t2i_r1.md §5.4 / §11.4: vision_model, aligner, gen_vision_model, gen_aligner, gen_head, gen_embed
OFFICIAL_FROZEN = ("model.vision_model.", "model.aligner.", "model.vqmodel.", "model.generation_embeddings.",
                   "model.generation_aligner.", "model.generation_head.")
IMAGE_SAMPLING = ("guidance_scale", "temperature", "top_k", "rows_per_step")  # rows_per_step: search only
COT_SETTINGS = ("temperature", "top_k", "max_new_tokens", "instruction", "system_prompt")


def _check_keys(values: Mapping, allowed: Sequence[str], where: str) -> dict:
    unknown = sorted(set(values) - set(allowed))
    if unknown:
        raise ValueError(f"{where}: unknown setting(s) {unknown}; allowed: {list(allowed)}")
    return dict(values)


class JanusGRPOPolicy:
    """Janus-Pro as a GRPO policy (module docstring).

    Args:
        bundle: a :class:`janus.checkpoint.JanusBundle` (model, layout, tokenizer; its pipeline decodes the images).
        sampling: image sampling, a config's ``model.sampling`` (``guidance_scale`` 5, ``temperature`` 1, ``top_k``
            None: the official values).
        cot: the semantic CoT, a config's ``model.cot`` block (``temperature`` 1, ``top_k`` 50, ``max_new_tokens``
            1024, optionally ``instruction`` / ``system_prompt`` / ``official_template``), or ``None`` for no CoT.
        modalities: trained token kinds, ``("text", "image")`` (BiCoT), ``("image",)`` or ``("text",)``.
        official_template: T2I-R1's ``User:`` / ``Assistant:`` roles for the reasoning and image prompts; ``None``
            takes the CoT block's ``official_template`` (default: Janus-Pro's ``<|User|>`` roles).
        guided_logprobs: score the CFG-guided distribution instead of the conditional branch.
        frozen: parameter-name prefixes kept fixed (default: the official list).
        rollout_groups: groups sampled per generation batch (official: 1 prompt per GPU).
        gradient_checkpointing: recompute activations in the teacher-forced pass (official: forced on).
    """

    def __init__(self, bundle: JanusBundle, *, sampling: Optional[Mapping] = None, cot: Optional[Mapping] = None,
                 modalities: Sequence[str] = ("text", "image"), official_template: Optional[bool] = None,
                 guided_logprobs: bool = False, frozen: Optional[Sequence[str]] = None, rollout_groups: int = 1,
                 gradient_checkpointing: bool = False) -> None:
        self.modalities = tuple(modalities)
        if not self.modalities or set(self.modalities) - {"text", "image"} or len(set(self.modalities)) != len(
                self.modalities):
            raise ValueError(f"modalities must be a non-empty subset of ('text', 'image'), got {list(modalities)}")
        if "text" in self.modalities and cot is None:
            raise ValueError("training the text modality needs a semantic CoT (cot settings), got cot=None")
        if rollout_groups < 1:
            raise ValueError(f"rollout_groups must be >= 1, got {rollout_groups}")
        self.bundle, self.layout, self.tokenizer = bundle, bundle.layout, bundle.tokenizer
        self.model = bundle.model
        self.sampling = _check_keys(sampling or {}, IMAGE_SAMPLING, "JanusGRPOPolicy.sampling")
        cot = None if cot is None else dict(cot)
        block_template = bool(cot.pop("official_template", False)) if cot is not None else False
        self.template = chat_template(block_template if official_template is None else official_template)
        self.cot = None if cot is None else SemanticCoT(bundle.model, bundle.layout, bundle.tokenizer,
                                                         template=self.template,
                                                         **_check_keys(cot, COT_SETTINGS, "JanusGRPOPolicy.cot"))
        self.pipe = bundle.pipeline(template=self.template)  # the bundle's decoder (the shapes world: its MAGVIT-v2)
        self.guided_logprobs = guided_logprobs
        frozen = OFFICIAL_FROZEN if frozen is None else tuple(frozen)
        self.frozen = frozen if "text" in self.modalities else (*frozen, "lm_head.")
        self.rollout_groups = rollout_groups
        if gradient_checkpointing:
            self.model.gradient_checkpointing_enable()

    # ------------------------------------------------------------------------------------------------ rollout
    @torch.no_grad()
    def rollout(self, model, prompts: Sequence[str], generators: Sequence[torch.Generator],
                group_size: int) -> Samples:
        """Sample ``len(prompts)`` (CoT, image) pairs, ``rollout_groups`` groups per generation batch."""
        if len(generators) != len(prompts):
            raise ValueError(f"{len(generators)} generators for {len(prompts)} rows")
        if model is not self.model:
            raise ValueError("JanusGRPOPolicy samples with its bundle's model: pass the unwrapped policy model")
        was_training = model.training
        model.eval()  # KV-cached sampling; transformers turns the cache off under gradient checkpointing in train mode
        try:
            rows = self.rollout_groups * group_size
            parts = [self._sample(list(prompts[s: s + rows]), list(generators[s: s + rows]))
                     for s in range(0, len(prompts), rows)]
        finally:
            model.train(was_training)
        return self._join(parts, list(prompts), group_size)

    def _sample(self, prompts: list[str], generators: list[torch.Generator]) -> dict:
        lay, device = self.layout, next(self.model.parameters()).device
        if self.cot is not None:
            plans = self.cot.sample(prompts, generator=generators)
            s = plans.sample
            text = dict(text_ids=s.completion_ids, text_mask=s.completion_mask, reasoning_ids=s.prompt_ids,
                        reasoning_mask=s.prompt_mask)
            image_prompts, cots, passes = plans.image_prompt_ids, plans.cots, s.forward_passes
        else:
            empty = torch.zeros((len(prompts), 0), dtype=torch.long, device=device)
            text = dict(text_ids=empty, text_mask=empty, reasoning_ids=None, reasoning_mask=None)
            image_prompts = [encode(self.tokenizer, lay, self.template.render(p), image=True) for p in prompts]
            cots, passes = None, 0
        out = self.pipe(input_ids=image_prompts, generator=generators, output_type="pil", **self.sampling)
        return dict(text, image_ids=out.tokens, image_prompt_ids=out.prompt_ids, image_prompt_mask=out.prompt_mask,
                    images=out.images, cots=cots, forward_passes=passes + out.forward_passes)

    def _join(self, parts: list[dict], prompts: list[str], group_size: int) -> Samples:
        """Concatenate generation batches: prompts left-padded, CoTs right-padded (pad id, mask 0)."""
        pad = self.layout.pad_id

        def left(key: str, value: int) -> torch.Tensor:
            width = max(p[key].shape[1] for p in parts)
            return torch.cat([torch.nn.functional.pad(p[key], (width - p[key].shape[1], 0), value=value)
                              for p in parts])

        def right(key: str, value: int) -> torch.Tensor:
            width = max(p[key].shape[1] for p in parts)
            return torch.cat([pad_to(p[key], width, value) for p in parts])

        inputs = {"image_prompt_ids": left("image_prompt_ids", pad), "image_prompt_mask": left("image_prompt_mask", 0)}
        if self.cot is not None:
            inputs.update(reasoning_ids=left("reasoning_ids", pad), reasoning_mask=left("reasoning_mask", 0))
        rollout = Rollout(prompts=prompts, group_size=group_size, text_ids=right("text_ids", pad),
                          text_mask=right("text_mask", 0), image_ids=torch.cat([p["image_ids"] for p in parts]),
                          inputs=inputs)
        images = [im for p in parts for im in p["images"]]
        texts = None if self.cot is None else [c for p in parts for c in p["cots"]]
        passes = sum(p["forward_passes"] for p in parts) / len(prompts)
        return Samples(rollout, images, passes, texts)

    # ------------------------------------------------------------------------------------------------ scoring
    def logps(self, model, rollout: Rollout) -> dict[str, torch.Tensor]:
        """modality -> ``[B, L_k]`` teacher-forced log-probs of the rollout's tokens (float32 or wider)."""
        out, pad = {}, self.layout.pad_id
        if "text" in self.modalities:
            prompt = trim_left(rollout.inputs["reasoning_ids"], rollout.inputs["reasoning_mask"])
            width = int(rollout.text_mask.sum(dim=1).max())  # CoTs are right-padded: drop columns no row counts
            lp = text_logprobs(model, prompt, rollout.text_ids[:, :width], rollout.text_mask[:, :width], pad_id=pad)
            out["text"] = pad_to(lp, rollout.text_ids.shape[1])
        if "image" in self.modalities:
            prompt = trim_left(rollout.inputs["image_prompt_ids"], rollout.inputs["image_prompt_mask"])
            guided = {}
            if self.guided_logprobs:
                guided = dict(guidance_scale=self.sampling.get("guidance_scale", 5.0),
                              temperature=self.sampling.get("temperature", 1.0), top_k=self.sampling.get("top_k"))
            out["image"] = image_logprobs(model, prompt, rollout.image_ids, pad_id=pad, **guided)
        return out

    def masks(self, rollout: Rollout) -> dict[str, torch.Tensor]:
        """The CoT through its first EOS, every image token (§6.1)."""
        return rollout.masks(self.modalities)

    # ------------------------------------------------------------------------------------------------ export
    def export(self, state_dict: Mapping[str, torch.Tensor], directory) -> Path:
        """The trained weights as a transformers-layout Janus checkpoint (``janus.checkpoint.load_janus`` reads it)."""
        config = self.model.config
        state = {k: v.detach().float().cpu() for k, v in state_dict.items()}
        model = build_strict(config, state, f"{directory} (GRPO export)", dtype=self.model.dtype)
        return save_hf(JanusBundle(model, self.layout, self.tokenizer), directory)

