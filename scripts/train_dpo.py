"""Recipe: DPO of Show-o on image preference pairs (imagegen_cot.md §8–9). Reads top to bottom.

    python scripts/train_dpo.py model=showo_256 data.pairs=data/dpo/pairs.jsonl run_dir=runs/dpo/r1
    accelerate launch --config_file configs/accelerate/deepspeed_zero2.yaml --num_processes 5 scripts/train_dpo.py ...

One run directory (:mod:`common.rundir`; resumed only with the same config and pairs) holds ``config.yaml``,
``run.json``, ``metrics.jsonl`` (one line per optimizer step), ``checkpoints/step_<k>/`` (accelerate state; the
newest complete one is resumed automatically) and ``final/`` (a :class:`showo.factory.ShowoBundle` directory,
loadable with ``configs/model/showo_bundle.yaml``).

The optimizer step always sees ``train.global_batch_size`` pairs (the paper's 10), whatever the process count:
``gradient accumulation = global / (processes x per-device batch)`` is derived, recorded in ``run.json`` and must be a
whole number. Pairs are sharded across processes (:func:`dpo.data.shard_batches`); every random draw is keyed by
(seed, epoch, pair), so resuming, the number of processes and the accumulation split do not change the pairs' masks.
A non-finite loss or gradient norm stops the run before the update (no ``final/`` from non-finite weights).
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import hydra
import torch
from accelerate import Accelerator, DistributedType, PartialState
from hydra.utils import instantiate
from omegaconf import DictConfig
from tqdm.auto import tqdm
from transformers import get_cosine_schedule_with_warmup

from common.io import atomic_write_json, check_finite_tensors
from common.recipe import check, open_run
from common.training import (after_step, check_step, decay_groups, prepare_resumable, recipe_logger,
                             total_grad_norm)
from dpo.batch import collate_pairs
from dpo.data import accumulation, epoch_order, load_pairs, shard_batches
from dpo.reference import ReferenceContext
from dpo.settings import TRAIN_SETTINGS
from dpo.trainer import DPOObjective
from showo.factory import ShowoBundle
from showo.logprob import MaskingConfig
from showo.modeling import ShowoModel
from showo.prompting import T2IPrompting

SETTINGS = TRAIN_SETTINGS
IGNORE = ("train.stop_after_steps", "train.keep_checkpoints", "wandb", "iterative")


def run(cfg: DictConfig) -> Path:
    """Train; returns the ``final/`` bundle directory (or the run dir if stopped early by ``stop_after_steps``)."""
    check(cfg, "train_dpo", SETTINGS)
    tc = cfg.train
    state = PartialState(cpu=str(cfg.device) == "cpu")
    per_device, accum = accumulation(tc.global_batch_size, tc.per_device_batch_size, state.num_processes)
    accelerator = Accelerator(cpu=str(cfg.device) == "cpu", mixed_precision=tc.mixed_precision,
                              gradient_accumulation_steps=accum)

    # 1. policy (and its tokenizer / VQ model, needed by online guidance)
    bundle: ShowoBundle = instantiate(cfg.model.bundle)
    model, layout = bundle.model, bundle.layout
    model.gradient_checkpointing = bool(tc.gradient_checkpointing)

    # 2. pairs, tokenized once; the global batch is world x per-device x accumulation
    pairs = load_pairs(cfg.data.pairs, layout)
    prompt_ids = T2IPrompting(bundle.tokenizer, layout).tokenize([p.prompt for p in pairs])
    masking = MaskingConfig(**cfg.masking)
    shard = dict(rank=accelerator.process_index, world_size=accelerator.num_processes,
                 per_device_batch_size=per_device, gradient_accumulation_steps=accum)
    steps_per_epoch = len(shard_batches(range(len(pairs)), **shard))
    total_steps = steps_per_epoch * tc.epochs if tc.max_steps is None else min(tc.max_steps, steps_per_epoch * tc.epochs)
    if total_steps < 1:
        raise ValueError(f"{cfg.data.pairs}: {len(pairs)} pairs are fewer than one global batch of {tc.global_batch_size}")

    # 3. the objective's parts, optimizer and schedule (a bad loss or optimizer setting fails before the run dir exists)
    dpo_loss, pair_weights = instantiate(cfg.dpo.loss), instantiate(cfg.dpo.pair_weights)
    guidance = instantiate(cfg.dpo.guidance)
    if guidance is not None and _shards_parameters(accelerator):
        raise ValueError("dpo.guidance samples with the unwrapped policy, which FSDP / ZeRO-3 shard: use DDP or ZeRO-2")
    optimizer = instantiate(tc.optimizer)(decay_groups(model, tc.weight_decay, tc.no_decay))
    scheduler = get_cosine_schedule_with_warmup(optimizer, round(tc.warmup_ratio * total_steps), total_steps)
    run_dir = open_run(cfg, ignore=IGNORE, main_process=accelerator.is_main_process, device=accelerator.device).path
    if accelerator.is_main_process:
        atomic_write_json(run_dir / "batch.json", {"global_batch_size": tc.global_batch_size, "processes":
                          accelerator.num_processes, "per_device_batch_size": per_device, "gradient_accumulation_steps":
                          accum, "steps": total_steps})
    accelerator.wait_for_everyone()

    # 4. reference (a copy of the *initial* policy, or its cached log-probs in the run dir) and the objective; the
    # cosine schedule with warmup is stepped once per optimizer step, whatever the process count
    ctx = ReferenceContext(layout, pairs, prompt_ids, masking, cfg.seed, tc.epochs, accelerator.device,
                           accelerator.is_main_process, accelerator.wait_for_everyone, run_dir)
    objective = DPOObjective(
        layout, masking, cfg.seed, dpo_loss, instantiate(cfg.dpo.reference)(model, ctx),
        reference_free=bool(cfg.dpo.reference_free), pair_weights=pair_weights,
        guidance=guidance, tokenizer=bundle.tokenizer, vq_model=bundle.vq_model,
        chosen_nll_weight=float(cfg.dpo.chosen_nll_weight),
    )
    if bundle.vq_model is not None:
        bundle.vq_model.to(accelerator.device)
    model.train()
    # 5. resume from the newest complete checkpoint
    model, optimizer, start = prepare_resumable(accelerator, run_dir, model, optimizer, scheduler,
                                                keep=tc.keep_checkpoints)
    logger = recipe_logger(accelerator, run_dir, start, cfg)

    # 6. the loop: one iteration = one optimizer step over `accumulation` micro-batches
    stop = total_steps if tc.stop_after_steps is None else min(total_steps, start + tc.stop_after_steps)
    for step in tqdm(range(start, stop), initial=start, total=total_steps, desc="dpo",
                     disable=not accelerator.is_local_main_process):
        epoch, k = divmod(step, steps_per_epoch)
        micro_batches = shard_batches(epoch_order(len(pairs), epoch, cfg.seed, tc.shuffle), **shard)[k]
        sums: dict[str, torch.Tensor] = defaultdict(lambda: torch.zeros((), device=accelerator.device))
        for indices in micro_batches:
            batch = collate_pairs(pairs, prompt_ids, indices, epoch)
            with accelerator.accumulate(model):
                loss, metrics = objective(model, batch, step, generation_model=accelerator.unwrap_model(model),
                                          device=accelerator.device)
                accelerator.backward(loss)
                for name, value in metrics.items():
                    sums[name] += value.float() / len(micro_batches)
                if accelerator.sync_gradients:
                    grad_norm = total_grad_norm(accelerator, model, tc.max_grad_norm)
                    reduced = accelerator.reduce(dict(sums), reduction="mean")
                    check_step(accelerator, run_dir, step + 1, loss=reduced["train/loss"], grad_norm=grad_norm)
                optimizer.step()
                optimizer.zero_grad()
        scheduler.step()
        logged = {n: v.item() for n, v in reduced.items()}
        logged["train/grad_norm"] = float(grad_norm)
        logged["train/lr"] = scheduler.get_last_lr()[0]
        logger.log(step + 1, logged)
        after_step(accelerator, run_dir, step + 1, every=tc.checkpoint_every, last=total_steps,
                   keep=tc.keep_checkpoints, model=model)
    logger.close()
    if stop < total_steps:
        return run_dir

    # 7. the trained policy as a bundle (the next round's model config points here)
    return save_final(accelerator, model, bundle, run_dir / "final")


def _shards_parameters(accelerator: Accelerator) -> bool:
    plugin = accelerator.state.deepspeed_plugin
    return accelerator.distributed_type == DistributedType.FSDP or (plugin is not None and plugin.zero_stage == 3)


def save_final(accelerator: Accelerator, model, bundle: ShowoBundle, directory: Path) -> Path:
    state = accelerator.get_state_dict(model)  # gathered full weights under FSDP / ZeRO-3
    if accelerator.is_main_process:
        final = ShowoModel(accelerator.unwrap_model(model).config)
        check_finite_tensors(state, f"{directory}: final DPO weights")
        final.load_state_dict({k: v.float().cpu() for k, v in state.items()})
        ShowoBundle(final, bundle.layout, bundle.tokenizer, bundle.vq_model.cpu() if bundle.vq_model else None).save_pretrained(directory)
    accelerator.wait_for_everyone()
    return directory


if __name__ == "__main__":
    hydra.main(config_path="../configs", config_name="train_dpo", version_base="1.3")(run)()
