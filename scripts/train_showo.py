"""Recipe: fine-tune Show-o on text-to-image pairs (showo.md §13), with accelerate.

    python scripts/train_showo.py dataset.directory=data/t2i max_steps=500
    accelerate launch --config_file configs/accelerate/ddp.yaml scripts/train_showo.py model=showo_256 ...

Reads top to bottom: check settings -> parts (model, dataset, optimizer from ``optim.optimizer``) -> open the run
directory (resumes only the same config and inputs) -> explicit loop -> save. Every step's data and masks are drawn
from (seed, step, micro-step, rank), and the model/optimizer/schedule come back from the accelerate checkpoint, so a
run restarted after a kill resumes at its last checkpoint and reproduces the uninterrupted run's losses and weights.
A non-finite loss or gradient norm stops the run before the update (``common.training.check_step``): the newest
checkpoint stays the last good one and no ``final/`` is written. The dataset builds its own batches
(``dataset.batch``), so other sequence formats (e.g. self-correction) use the same loop.
"""
from __future__ import annotations

import contextlib
from pathlib import Path

import hydra
import torch
from accelerate import Accelerator
from hydra.utils import instantiate
from omegaconf import DictConfig
from tqdm import tqdm
from transformers import get_cosine_schedule_with_warmup

from common.io import check_finite_tensors
from common.recipe import check, open_run
from common.seeding import hash_seed
from common.training import (after_step, decay_groups, optimizer_step, prepare_resumable, recipe_logger,
                             shard_indices, total_grad_norm)
from common.validate import Choice, Float, Int
from showo.factory import ShowoBundle
from showo.loss import t2i_loss

SETTINGS = (Int("max_steps", min=1), Int("per_device_batch_size", min=1), Int("gradient_accumulation_steps", min=1),
            Int("checkpoint_every", min=1), Int("keep_checkpoints", min=1), Int("log_every", min=1), Int("seed"),
            Float("optim.lr", min=0), Float("optim.weight_decay", min=0), Float("optim.max_grad_norm", min=0, optional=True),
            Int("lr_scheduler.warmup_steps", min=0), Choice("mixed_precision", ["no", "fp16", "bf16"]),
            Float("dataset.cond_dropout_prob", min=0, max=1, optional=True),
            Float("dataset.min_masking_rate", min=0, max=1, optional=True),
            Int("debug_exit_after_step", min=1, optional=True))
IGNORE = ("debug_exit_after_step", "log_every", "keep_checkpoints", "wandb")


def run(cfg: DictConfig) -> Path:
    check(cfg, "train_showo", SETTINGS)
    accelerator = Accelerator(cpu=cfg.device == "cpu", mixed_precision=cfg.mixed_precision)

    # ---- parts (a bad dataset or model fails here, before the run directory exists)
    bundle = instantiate(cfg.model.bundle)
    model, layout, tokenizer = bundle.model.train(), bundle.layout, bundle.tokenizer
    model.gradient_checkpointing = cfg.gradient_checkpointing
    dataset = instantiate(cfg.dataset)
    dataset.check(layout)
    optimizer = instantiate(cfg.optim.optimizer)(decay_groups(model, cfg.optim.weight_decay, cfg.optim.no_decay))
    lr_scheduler = get_cosine_schedule_with_warmup(optimizer, cfg.lr_scheduler.warmup_steps, cfg.max_steps)
    run_dir = open_run(cfg, ignore=IGNORE, main_process=accelerator.is_main_process, device=accelerator.device).path
    accelerator.wait_for_everyone()
    model, optimizer, start = prepare_resumable(accelerator, run_dir, model, optimizer, lr_scheduler,
                                                keep=cfg.keep_checkpoints)
    logger = recipe_logger(accelerator, run_dir, start, cfg)

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
        grad_norm = total_grad_norm(accelerator, model, cfg.optim.max_grad_norm)
        loss_value = accelerator.reduce(total, reduction="mean")
        optimizer_step(accelerator, run_dir, step + 1, optimizer, lr_scheduler, loss=loss_value, grad_norm=grad_norm)

        if (step + 1) % cfg.log_every == 0:
            logger.log(step + 1, {"train/loss": loss_value.item(), "train/lr": lr_scheduler.get_last_lr()[0],
                                  "train/grad_norm": float(grad_norm)})
        after_step(accelerator, run_dir, step + 1, every=cfg.checkpoint_every, last=cfg.max_steps,
                   keep=cfg.keep_checkpoints, model=model, exit_after=cfg.debug_exit_after_step)

    # ---- save
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        final = accelerator.unwrap_model(model).eval()
        check_finite_tensors(final.state_dict(), f"{run_dir}: final weights")
        ShowoBundle(final, layout, tokenizer, bundle.vq_model).save_pretrained(run_dir / "final")
        accelerator.print(f"saved {run_dir / 'final'}")
    logger.close()
    return run_dir


if __name__ == "__main__":
    hydra.main(config_path="../configs", config_name="train_showo", version_base="1.3")(run)()
