"""Pieces of the GRPO recipe (``scripts/train_grpo.py``) that are not the loop itself (t2i_r1.md §5.3, §6, §7).

* :func:`accumulation`: gradient-accumulation steps from the prompts per optimizer step, the groups per micro-batch
  and the process count (official: 16 prompts = 8 GPUs x 1 group x 2 steps);
* :func:`generation_model`: the policy's plain module for rollouts, with full parameters under FSDP / ZeRO-3;
* :func:`frozen_reference`: the frozen copy of the initial policy (§5.3);
* :func:`micro_batch_logps`: no-gradient log-probs of a rollout computed micro-batch by micro-batch (the reference's,
  and the behaviour policy's when a rollout is reused), with exactly the tensors the update's passes will see;
* :func:`gathered_metrics`: reward metrics over every process's samples (so they do not depend on the process count).
"""
from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterator
from typing import Optional

import torch
from torch import nn

from common.validate import ConfigError
from grpo.metrics import COT_LENGTH, reward_metrics
from grpo.rollout import Rollout

__all__ = ["accumulation", "frozen_reference", "gathered_metrics", "generation_model", "micro_batch_logps"]


def accumulation(prompts_per_step: int, groups_per_micro_batch: int, world: int) -> int:
    """Accumulation steps so that ``world x groups_per_micro_batch x steps == prompts_per_step``."""
    per_rank, rest = divmod(prompts_per_step, world)
    if rest or per_rank % groups_per_micro_batch or per_rank == 0:
        raise ConfigError(f"train_grpo: grpo.prompts_per_step = {prompts_per_step} is not a multiple of {world} "
                          f"process(es) x grpo.groups_per_micro_batch = {groups_per_micro_batch}")
    return per_rank // groups_per_micro_batch


@contextlib.contextmanager
def generation_model(accelerator, module: nn.Module) -> Iterator[nn.Module]:
    """The unwrapped :class:`~grpo.policy.LogProbModule` for sampling (its ``.model`` is the generator).

    FSDP and DeepSpeed ZeRO-3 shard the parameters: they are gathered for the rollout (as TRL's
    ``unwrap_model_for_generation``), which needs the whole model in one device's memory.
    """
    from accelerate import DistributedType

    unwrapped = accelerator.unwrap_model(module)
    plugin = accelerator.state.deepspeed_plugin
    if accelerator.distributed_type == DistributedType.DEEPSPEED and plugin is not None and plugin.zero_stage == 3:
        import deepspeed  # optional dependency of ZeRO-3 runs

        with deepspeed.zero.GatheredParameters(list(module.parameters())):
            yield unwrapped
    elif accelerator.distributed_type == DistributedType.FSDP:
        from torch.distributed.fsdp import FullyShardedDataParallel

        with FullyShardedDataParallel.summon_full_params(module, writeback=False, recurse=True):
            yield unwrapped
    else:
        yield unwrapped


def frozen_reference(model: nn.Module, device, dtype: Optional[str] = None) -> nn.Module:
    """A frozen, eval-mode deep copy of the initial policy on ``device`` (optionally cast, e.g. ``"bfloat16"``)."""
    reference = copy.deepcopy(model).eval().requires_grad_(False).to(device)
    if dtype is not None:
        reference.to(getattr(torch, dtype))
    return reference


def micro_batch_logps(score: Callable[[Rollout], dict[str, torch.Tensor]], rollout: Rollout,
                      groups_per_micro_batch: int, autocast=contextlib.nullcontext) -> dict[str, torch.Tensor]:
    """modality -> ``[B, L_k]`` log-probs ``score(micro_batch)`` without gradient, micro-batch by micro-batch (the same
    rows and trimming as the update, so at step 0 the reference's values equal the policy's bit for bit).

    ``score``: ``lambda mb: policy.logps(reference, mb)`` for the frozen reference, the wrapped policy module for the
    behaviour log-probs of a reused rollout."""
    parts = []
    with torch.no_grad(), autocast():
        for mb in rollout.micro_batches(groups_per_micro_batch):
            parts.append({k: v.float() for k, v in score(mb).items()})
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


def gathered_metrics(accelerator, rollout: Rollout) -> dict[str, float]:
    """Reward metrics and ``cot_length`` over the samples of every process (rank blocks are in global order)."""
    device = accelerator.device

    def gather(values: torch.Tensor) -> torch.Tensor:
        return accelerator.gather(values.float().to(device).contiguous()).cpu()

    per_expert = {name: gather(values) for name, values in rollout.rewards.items()}
    metrics = reward_metrics(per_expert, gather(rollout.reward), rollout.group_size)
    metrics[COT_LENGTH] = float(gather(rollout.cot_length).double().mean())
    return metrics
