"""Recipe: fine-tune Show-o on text-to-image pairs (showo.md §13), with accelerate.

    python scripts/train_showo.py dataset.directory=data/t2i max_steps=500
    accelerate launch --config_file configs/accelerate/ddp.yaml scripts/train_showo.py model=showo_256 ...

Reads top to bottom: config -> parts -> explicit loop -> save. Every step's data and masks are drawn from
(seed, step, micro-step, rank), and the model/optimizer/schedule come back from the accelerate checkpoint, so a run
restarted after a kill resumes at its last checkpoint and reproduces the uninterrupted run's losses and weights.
The dataset object builds its own batches (``dataset.batch``), so other sequence formats use the same loop.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

import hydra
import torch
from accelerate import Accelerator
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm
from transformers import get_cosine_schedule_with_warmup

from showo.factory import ShowoBundle
from showo.loss import t2i_loss
from showo.seeding import hash_seed
from showo.recipe_utils import (MetricsLogger, decay_groups, resume, save_checkpoint,
                                shard_indices, write_run_config)


@hydra.main(config_path="../configs", config_name="train_showo", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run_dir = Path(cfg.output_dir)
    accelerator = Accelerator(cpu=cfg.device == "cpu", mixed_precision=cfg.mixed_precision)
    if accelerator.is_main_process:
        write_run_config(run_dir, OmegaConf.to_yaml(cfg, resolve=True))

    # ---- parts
    bundle = instantiate(cfg.model.bundle)
    model, layout, tokenizer = bundle.model.train(), bundle.layout, bundle.tokenizer
    model.gradient_checkpointing = cfg.gradient_checkpointing
    dataset = instantiate(cfg.dataset)
    dataset.check(layout)
    optimizer = torch.optim.AdamW(decay_groups(model, cfg.optim.weight_decay, cfg.optim.no_decay), lr=cfg.optim.lr,
                                  betas=tuple(cfg.optim.betas), eps=cfg.optim.eps)
    lr_scheduler = get_cosine_schedule_with_warmup(optimizer, cfg.lr_scheduler.warmup_steps, cfg.max_steps)
    model, optimizer = accelerator.prepare(model, optimizer)
    accelerator.register_for_checkpointing(lr_scheduler)

    start = resume(accelerator, run_dir)
    logger = MetricsLogger(run_dir, accelerator.is_main_process, start, OmegaConf.to_container(cfg.wandb),
                           OmegaConf.to_container(cfg, resolve=True))

    # ---- loop
    accum, world, rank = cfg.gradient_accumulation_steps, accelerator.num_processes, accelerator.process_index
    per_step = cfg.per_device_batch_size * accum * world
    for step in tqdm(range(start, cfg.max_steps), desc="train_showo", initial=start, total=cfg.max_steps,
                     disable=not accelerator.is_main_process, dynamic_ncols=True):
        total = torch.zeros((), device=accelerator.device)
        for micro in range(accum):
            first = step * per_step + (micro * world + rank) * cfg.per_device_batch_size
            indices = shard_indices(len(dataset), cfg.seed, first, cfg.per_device_batch_size)
            generator = torch.Generator().manual_seed(hash_seed(cfg.seed, step, micro, rank))
            batch = {k: v.to(accelerator.device) for k, v in dataset.batch(indices, layout, tokenizer, generator).items()}
            sync = contextlib.nullcontext() if micro == accum - 1 else accelerator.no_sync(model)
            with sync, accelerator.autocast():
                logits = model(batch["input_ids"], batch["attention_mask"]).logits
                loss = t2i_loss(logits, batch["labels"], layout) / accum
                accelerator.backward(loss)
            total += loss.detach()
        grad_norm = None
        if cfg.optim.max_grad_norm is not None:
            grad_norm = accelerator.clip_grad_norm_(model.parameters(), cfg.optim.max_grad_norm)
        optimizer.step()
        lr_scheduler.step()
        optimizer.zero_grad(set_to_none=True)

        loss_value = accelerator.reduce(total, reduction="mean").item()
        if (step + 1) % cfg.log_every == 0:
            metrics = {"train/loss": loss_value, "train/lr": lr_scheduler.get_last_lr()[0]}
            if grad_norm is not None:
                metrics["train/grad_norm"] = float(grad_norm)
            logger.log(step + 1, metrics)
        if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.max_steps:
            save_checkpoint(accelerator, run_dir, step + 1, cfg.keep_checkpoints)
        if cfg.debug_exit_after_step is not None and step + 1 == cfg.debug_exit_after_step:
            os._exit(17)  # testing aid: die like a killed process, no cleanup

    # ---- save
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        final = ShowoBundle(accelerator.unwrap_model(model).eval(), layout, tokenizer, bundle.vq_model)
        final.save_pretrained(run_dir / "final")
        accelerator.print(f"saved {run_dir / 'final'}")
    logger.close()


if __name__ == "__main__":
    main()
