"""Recipe: train a Janus-Pro on (prompt, plan, image codes) triples -- text-to-image with and without a semantic CoT
(janus/training.py), with accelerate. The shapes world's tiny Janus-Pro is trained from scratch with it:

    python scripts/train_janus.py +experiment=shapes/janus                     # committed as checkpoints/shapes/janus
    accelerate launch --config_file configs/accelerate/ddp.yaml scripts/train_janus.py ...

Reads top to bottom like scripts/train_showo.py: check settings -> parts (model from ``model.bundle``, a pipeline with
the ``model.cot`` reasoning prompt, optimizer from ``optim.optimizer``) -> open the run directory (resumes only the same
config and inputs) -> the data (``dataset``: built once into ``<run>/data``, read back on resume) -> explicit loop -> save ``final/`` (transformers' Janus layout;
the image decoder is not part of it). Every step's examples, regimes and prompt dropout are drawn from
(seed, step, micro-step, rank) and model/optimizer/schedule come back from the accelerate checkpoint, so a run
restarted after a kill resumes at its last checkpoint and reproduces the uninterrupted run. A non-finite loss or
gradient norm stops the run before the update (``common.training.check_step``), and no ``final/`` is written.
"""
from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

import hydra
import torch
from accelerate import Accelerator
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm
from transformers import get_cosine_schedule_with_warmup

from common.io import atomic_write_json, check_finite_tensors
from common.recipe import check, open_run
from common.seeding import hash_seed
from common.training import (MetricsLogger, check_step, decay_groups, resume, save_checkpoint, shard_indices,
                             total_grad_norm)
from common.validate import Choice, Float, Int
from janus.checkpoint import JanusBundle, save_hf
from janus.training import T2ILoss, build_batch

SETTINGS = (Int("max_steps", min=1), Int("per_device_batch_size", min=1), Int("gradient_accumulation_steps", min=1),
            Int("checkpoint_every", min=1), Int("keep_checkpoints", min=1), Int("log_every", min=1), Int("seed"),
            Float("optim.lr", min=0), Float("optim.weight_decay", min=0), Float("optim.max_grad_norm", min=0, optional=True),
            Int("lr_scheduler.warmup_steps", min=0), Choice("mixed_precision", ["no", "fp16", "bf16"]),
            Float("plan_prob", min=0, max=1), Float("cond_dropout_prob", min=0, max=1), Float("text_weight", min=0),
            Int("debug_exit_after_step", min=1, optional=True))
IGNORE = ("debug_exit_after_step", "log_every", "keep_checkpoints", "wandb")


def run(cfg: DictConfig) -> Path:
    check(cfg, "train_janus", SETTINGS)
    accelerator = Accelerator(cpu=cfg.device == "cpu", mixed_precision=cfg.mixed_precision)

    # ---- parts (a bad dataset or model fails here, before the run directory exists)
    bundle = instantiate(cfg.model.bundle)
    cot = OmegaConf.to_container(cfg.model.cot, resolve=True) if cfg.model.get("cot") else None
    if cot is None:
        raise ValueError("train_janus: model.cot must be set (its reasoning prompt is what the plans answer)")
    pipe = bundle.pipeline(cot=cot)
    model, layout = bundle.model.train(), bundle.layout
    for unused in (model.model.vision_model, model.model.aligner, model.model.vqmodel):
        unused.requires_grad_(False)  # the understanding tower and the Janus VQ take no part in text-to-image
    step_loss = T2ILoss(model, layout.pad_id, cfg.text_weight)  # the whole step's forward, for DDP / FSDP
    optimizer = instantiate(cfg.optim.optimizer)(decay_groups(model, cfg.optim.weight_decay, cfg.optim.no_decay))
    lr_scheduler = get_cosine_schedule_with_warmup(optimizer, cfg.lr_scheduler.warmup_steps, cfg.max_steps)
    run_dir = open_run(cfg, ignore=IGNORE, main_process=accelerator.is_main_process, device=accelerator.device).path
    with accelerator.main_process_first():  # the main process builds <run>/data once; the others read it
        data = instantiate(cfg.dataset, cache=str(run_dir / "data"))
    data.check(layout)
    accelerator.wait_for_everyone()
    step_loss, optimizer = accelerator.prepare(step_loss, optimizer)
    accelerator.register_for_checkpointing(lr_scheduler)

    start = resume(accelerator, run_dir, cfg.keep_checkpoints)
    logger = MetricsLogger(run_dir, accelerator.is_main_process, start, OmegaConf.to_container(cfg.wandb),
                           OmegaConf.to_container(cfg, resolve=True))

    # ---- loop
    accum, world, rank = cfg.gradient_accumulation_steps, accelerator.num_processes, accelerator.process_index
    per_step = cfg.per_device_batch_size * accum * world
    began = time.perf_counter()
    for step in tqdm(range(start, cfg.max_steps), desc="train_janus", initial=start, total=cfg.max_steps,
                     disable=not accelerator.is_main_process, dynamic_ncols=True):
        total = torch.zeros((), device=accelerator.device)
        parts = {"image_nll": 0.0, "text_nll": 0.0}
        for micro in range(accum):
            first = step * per_step + (micro * world + rank) * cfg.per_device_batch_size
            indices = shard_indices(len(data), cfg.seed, first, cfg.per_device_batch_size)
            generator = torch.Generator().manual_seed(hash_seed(cfg.seed, step, micro, rank))
            batch = build_batch(pipe, data, indices, generator, plan_prob=cfg.plan_prob,
                                cond_dropout_prob=cfg.cond_dropout_prob)
            sync = contextlib.nullcontext() if micro == accum - 1 else accelerator.no_sync(step_loss)
            with sync, accelerator.autocast():
                loss, nll = step_loss(batch)
                accelerator.backward(loss / accum)
            total += loss.detach() / accum
            parts = {k: parts[k] + float(v) / accum for k, v in nll.items()}
        grad_norm = total_grad_norm(accelerator, step_loss, cfg.optim.max_grad_norm)
        loss_value = accelerator.reduce(total, reduction="mean")
        check_step(accelerator, run_dir, step + 1, loss=loss_value, grad_norm=grad_norm)
        optimizer.step()
        lr_scheduler.step()
        optimizer.zero_grad(set_to_none=True)

        if (step + 1) % cfg.log_every == 0:
            logger.log(step + 1, {"train/loss": loss_value.item(), **{f"train/{k}": v for k, v in parts.items()},
                                  "train/lr": lr_scheduler.get_last_lr()[0], "train/grad_norm": float(grad_norm)})
        if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.max_steps:
            save_checkpoint(accelerator, run_dir, step + 1, cfg.keep_checkpoints, model=step_loss)
        if cfg.debug_exit_after_step is not None and step + 1 == cfg.debug_exit_after_step:
            os._exit(17)  # testing aid: die like a killed process, no cleanup

    # ---- save
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        final = accelerator.unwrap_model(step_loss).model.eval()
        check_finite_tensors(final.state_dict(), f"{run_dir}: final weights")
        save_hf(JanusBundle(final, layout, bundle.tokenizer), run_dir / "final")
        atomic_write_json(run_dir / "train_time.json", {"steps": cfg.max_steps - start,
                                                        "seconds_this_session": round(time.perf_counter() - began, 1)})
        accelerator.print(f"saved {run_dir / 'final'}")
    logger.close()
    return run_dir


if __name__ == "__main__":
    hydra.main(config_path="../configs", config_name="train_janus", version_base="1.3")(run)()
