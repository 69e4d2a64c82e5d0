"""Recipe: DPO of Show-o on image preference pairs (imagegen_cot.md §8–9). Reads top to bottom.

    python scripts/train_dpo.py model=showo_256 data.pairs=data/dpo/pairs.jsonl run_dir=runs/dpo/r1
    accelerate launch --config_file configs/accelerate/zero2.yaml scripts/train_dpo.py dpo=parm_guided ...

One run directory holds ``config.yaml`` (resolved), ``metrics.jsonl`` (one line per optimizer step), ``checkpoints/
step_<k>/`` (accelerate state + ``trainer_state.json``; the newest complete one is resumed automatically) and
``final/`` (a :class:`showo.factory.ShowoBundle` directory, loadable with ``configs/model/showo_bundle.yaml``).
Pairs are sharded across processes (:func:`dpo.data.shard_batches`); every random draw is keyed by (seed, epoch,
pair), so resuming, the number of processes and the accumulation split do not change the pairs' masks.
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import hydra
import torch
from accelerate import Accelerator, DistributedType
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm
from transformers import get_cosine_schedule_with_warmup

from dpo.batch import collate_pairs
from dpo.data import epoch_order, load_pairs, shard_batches
from dpo.reference import ReferenceContext
from dpo.trainer import DPOObjective
from showo.factory import ShowoBundle
from showo.logprob import MaskingConfig
from showo.modeling import ShowoModel
from showo.prompting import T2IPrompting
from showo.recipe_utils import MetricsLogger, decay_groups, resume, save_checkpoint, write_run_config


def main(cfg: DictConfig) -> Path:
    """Train; returns the ``final/`` bundle directory (or the run dir if stopped early by ``stop_after_steps``)."""
    run_dir = Path(cfg.run_dir)
    tc = cfg.train
    accelerator = Accelerator(cpu=str(cfg.device) == "cpu", mixed_precision=tc.mixed_precision,
                              gradient_accumulation_steps=tc.gradient_accumulation_steps)
    if accelerator.is_main_process:
        write_run_config(run_dir, OmegaConf.to_yaml(cfg, resolve=True))

    # 1. policy (and its tokenizer / VQ model, needed by online guidance)
    bundle: ShowoBundle = instantiate(cfg.model.bundle)
    model, layout = bundle.model, bundle.layout
    model.gradient_checkpointing = bool(tc.gradient_checkpointing)

    # 2. pairs, tokenized once; the global batch is world x per-device x accumulation
    pairs = load_pairs(cfg.data.pairs, layout)
    prompt_ids = T2IPrompting(bundle.tokenizer, layout).tokenize([p.prompt for p in pairs])
    masking = MaskingConfig(**cfg.masking)
    shard = dict(rank=accelerator.process_index, world_size=accelerator.num_processes,
                 per_device_batch_size=tc.per_device_batch_size, gradient_accumulation_steps=tc.gradient_accumulation_steps)
    steps_per_epoch = len(shard_batches(range(len(pairs)), **shard))
    total_steps = steps_per_epoch * tc.epochs if tc.max_steps is None else min(tc.max_steps, steps_per_epoch * tc.epochs)
    if total_steps < 1:
        raise ValueError(f"{cfg.data.pairs}: {len(pairs)} pairs are fewer than one global batch of "
                         f"{accelerator.num_processes * tc.per_device_batch_size * tc.gradient_accumulation_steps}")

    # 3. reference (a copy of the *initial* policy, or its cached log-probs) and the objective
    ctx = ReferenceContext(layout, pairs, prompt_ids, masking, cfg.seed, tc.epochs, accelerator.device,
                           accelerator.is_main_process, accelerator.wait_for_everyone, run_dir)
    objective = DPOObjective(
        layout, masking, cfg.seed, instantiate(cfg.dpo.loss), instantiate(cfg.dpo.reference)(model, ctx),
        reference_free=bool(cfg.dpo.reference_free), pair_weights=instantiate(cfg.dpo.pair_weights),
        guidance=instantiate(cfg.dpo.guidance), tokenizer=bundle.tokenizer, vq_model=bundle.vq_model,
    )
    if bundle.vq_model is not None:
        bundle.vq_model.to(accelerator.device)
    if objective.guidance is not None and _shards_parameters(accelerator):
        raise ValueError("dpo.guidance samples with the unwrapped policy, which FSDP / ZeRO-3 shard: use DDP or ZeRO-2")

    # 4. optimizer, cosine schedule with warmup (stepped once per optimizer step, whatever the process count)
    optimizer = instantiate(tc.optimizer)(decay_groups(model, tc.weight_decay, tc.no_decay))
    scheduler = get_cosine_schedule_with_warmup(optimizer, round(tc.warmup_ratio * total_steps), total_steps)
    model.train()
    model, optimizer = accelerator.prepare(model, optimizer)
    accelerator.register_for_checkpointing(scheduler)

    # 5. resume from the newest complete checkpoint
    start = resume(accelerator, run_dir)
    logger = MetricsLogger(run_dir, accelerator.is_main_process, start, OmegaConf.to_container(cfg.wandb),
                           OmegaConf.to_container(cfg, resolve=True))

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
                if accelerator.sync_gradients and tc.max_grad_norm is not None:
                    accelerator.clip_grad_norm_(model.parameters(), tc.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad()
            for name, value in metrics.items():
                sums[name] += value.float() / len(micro_batches)
        scheduler.step()
        logged = {n: v.item() for n, v in accelerator.reduce(dict(sums), reduction="mean").items()}
        logged["train/lr"] = scheduler.get_last_lr()[0]
        logger.log(step + 1, logged)
        if (step + 1) % tc.checkpoint_every == 0 or step + 1 == total_steps:
            save_checkpoint(accelerator, run_dir, step + 1, tc.keep_checkpoints)
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
        final.load_state_dict({k: v.float().cpu() for k, v in state.items()})
        ShowoBundle(final, bundle.layout, bundle.tokenizer, bundle.vq_model.cpu() if bundle.vq_model else None).save_pretrained(directory)
    accelerator.wait_for_everyone()
    return directory


@hydra.main(config_path="../configs", config_name="train_dpo", version_base="1.3")
def cli(cfg: DictConfig) -> None:
    main(cfg)


if __name__ == "__main__":
    cli()
