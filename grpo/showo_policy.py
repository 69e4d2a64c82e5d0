"""Show-o as a GRPO policy: token-level GRPO on a masked-token generator (imagegen_cot.md §8.3; t2i_r1.md §6).

Show-o samples an image by MaskGIT decoding (parallel unmasking over a few steps), so ``log pi(image | prompt)`` has
no tractable autoregressive factorisation. The policy's per-token log-probs are those DPO uses for Show-o
(:mod:`showo.logprob`): one random corruption ``m`` of the sampled image (cosine mask ratio, positions uniform,
drawn from the row's own generator after sampling, so the policy, the reference and every process see the same
``m``), and for each masked position ``j`` the log-prob ``log p(x_j | x_{not m}, c)`` of the sampled code. The loss
counts the masked positions (``image`` mask); unmasked ones carry no term. With ``ratio = exp(lp - stopgrad(lp))``
this is REINFORCE with the masked-token estimate standing in for the log-likelihood, the same substitution DPO makes
(Diffusion-DPO's ELBO move); the KL is the k3 estimator on those positions.

Differences from DPO's scoring: no prompt dropout (the policy is the conditional one) and the ``<|soi|>`` /
``<|eoi|>`` copy targets are not scored (they are not sampled tokens).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Optional

import torch

from grpo.policy import Samples
from grpo.rollout import Rollout
from showo.factory import ShowoBundle
from showo.logprob import MaskingConfig, draw_masked_batch
from showo.loss import IGNORE_INDEX
from showo.modeling import ShowoModel
from showo.pipeline import ShowoPipeline
from showo.prompting import T2IPrompting, t2i_attention_mask
from showo.scheduler import MaskGITScheduler

__all__ = ["ShowoGRPOPolicy"]


class ShowoGRPOPolicy:
    """Show-o (every parameter trains, as in Show-o's DPO) sampling with ``sampling`` (``guidance_scale``,
    ``num_inference_steps``) and ``scheduler``; ``min_masking_rate`` clips the corruption's mask ratio from below."""

    modalities = ("image",)

    def __init__(self, bundle: ShowoBundle, *, sampling: Optional[Mapping] = None,
                 scheduler: Optional[MaskGITScheduler] = None, min_masking_rate: float = 0.0,
                 frozen: Sequence[str] = (), rollout_groups: int = 1, gradient_checkpointing: bool = False) -> None:
        if bundle.vq_model is None:
            raise ValueError("the Show-o bundle has no image tokenizer (vq/): rewards need decoded images")
        if rollout_groups < 1:
            raise ValueError(f"rollout_groups must be >= 1, got {rollout_groups}")
        self.bundle, self.layout, self.model = bundle, bundle.layout, bundle.model
        self.sampling = dict(sampling or {})
        bundle.pipeline(scheduler).check_sampling(self.sampling, "ShowoGRPOPolicy.sampling")
        self.scheduler = scheduler
        self.masking = MaskingConfig(cond_dropout_prob=0.0, min_masking_rate=min_masking_rate, num_draws=1,
                                     count_special=False)
        self.prompting = T2IPrompting(bundle.tokenizer, bundle.layout)
        self.frozen = tuple(frozen)
        self.rollout_groups = rollout_groups
        self.model.gradient_checkpointing = bool(gradient_checkpointing)

    @torch.no_grad()
    def rollout(self, model, prompts: Sequence[str], generators: Sequence[torch.Generator],
                group_size: int) -> Samples:
        """Sample, decode, then draw each row's corruption from its own generator (state after sampling)."""
        if len(generators) != len(prompts):
            raise ValueError(f"{len(generators)} generators for {len(prompts)} rows")
        was_training = model.training
        model.eval()
        try:
            pipe = ShowoPipeline(model, self.layout, tokenizer=self.bundle.tokenizer, vq_model=self.bundle.vq_model,
                                 scheduler=self.scheduler)
            rows = self.rollout_groups * group_size
            tokens, images, passes = [], [], 0
            for s in range(0, len(prompts), rows):
                out = pipe(list(prompts[s: s + rows]), generator=list(generators[s: s + rows]), **self.sampling)
                tokens.append(out.tokens.cpu())
                images += out.images
                passes += out.forward_passes
        finally:
            model.train(was_training)
        codes = torch.cat(tokens)
        masked = draw_masked_batch(self.prompting.tokenize(list(prompts)), codes, self.layout,
                                   [mask_generator(g) for g in generators], self.masking)
        labels = masked.labels[:, self.layout.image_slice]  # [B, N]: code ids where masked, -100 elsewhere
        rollout = Rollout(prompts=list(prompts), group_size=group_size,
                          text_ids=torch.zeros((len(prompts), 0), dtype=torch.long),
                          text_mask=torch.zeros((len(prompts), 0), dtype=torch.long), image_ids=codes,
                          inputs={"input_ids": masked.input_ids, "labels": labels})
        return Samples(rollout, images, passes / len(prompts))

    def logps(self, model, rollout: Rollout) -> dict[str, torch.Tensor]:
        """``{"image": [B, N]}``: ``log p(x_j | x_{not m}, c)`` at masked positions, 0 elsewhere."""
        device = next(model.parameters()).device
        ids, labels = rollout.inputs["input_ids"].to(device), rollout.inputs["labels"].to(device)
        logits = model(ids, t2i_attention_mask(ids, self.layout), logits_rows=self.layout.image_slice).logits.float()
        scored = labels != IGNORE_INDEX
        safe = torch.where(scored, labels, torch.zeros_like(labels))
        picked = logits.gather(-1, safe[..., None])[..., 0] - torch.logsumexp(logits, dim=-1)  # [B, N]
        return {"image": picked * scored}

    def masks(self, rollout: Rollout) -> dict[str, torch.Tensor]:
        """The masked (scored) positions of each row's corruption."""
        return {"image": (rollout.inputs["labels"] != IGNORE_INDEX).float()}

    def export(self, state_dict: Mapping[str, torch.Tensor], directory) -> Path:
        """The trained weights as a :class:`showo.factory.ShowoBundle` directory (``showo/``, ``tokenizer/``, ``vq/``)."""
        model = ShowoModel(self.model.config)
        model.load_state_dict({k: v.detach().float().cpu() for k, v in state_dict.items()})
        vq = self.bundle.vq_model.cpu()
        return ShowoBundle(model, self.layout, self.bundle.tokenizer, vq).save_pretrained(directory)



def mask_generator(generator: torch.Generator) -> torch.Generator:
    """A CPU generator (what :func:`showo.logprob.draw_masked_batch` draws with) seeded from the row's own generator,
    which may live on the GPU: the corruption is a function of the row's seed alone."""
    seed = torch.randint(0, 2**62, (1,), generator=generator, device=generator.device)
    return torch.Generator().manual_seed(int(seed))
