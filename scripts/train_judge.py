"""Recipe: fine-tune a LLaVA-OneVision judge (ORM / PARM / PARM++) on yes/no conversations (imagegen_cot.md §4.2,
§6.5, §7), with accelerate; full fine-tune or LoRA (peft).

    python scripts/train_judge.py model_dir=ckpts/hf/llava-onevision-qwen2-7b-ov judge_data=orm
    accelerate launch --config_file configs/accelerate/deepspeed_zero3.yaml scripts/train_judge.py judge_data=parm \
        mixed_precision=bf16 device=cuda

Reads top to bottom: check settings -> parts (judge, data, optimizer from ``optim.optimizer``) -> open the run
directory (resumes only the same config and inputs, :mod:`common.rundir`) -> explicit loop -> save. The loss is the
cross-entropy of the assistant tokens only (``reward_models.training.answer_token_loss``). Batches are drawn from
(seed, step, micro-step, rank) and the model / optimizer / schedule / RNG come back from the accelerate checkpoint, so
a killed run restarted with the same command resumes at its last checkpoint and reproduces the uninterrupted run's
losses. A non-finite loss or gradient norm stops the run before the update; no ``final/`` from non-finite weights.
"""
from __future__ import annotations

import contextlib
import math
import tempfile
from pathlib import Path

import hydra
import torch
from accelerate import Accelerator
from hydra.utils import instantiate
from omegaconf import DictConfig
from peft import get_peft_model
from tqdm import tqdm
from transformers import (LlavaOnevisionForConditionalGeneration, LlavaOnevisionProcessor,
                          get_cosine_schedule_with_warmup)

from common.io import check_finite_tensors
from common.recipe import check, open_run
from common.training import (after_step, optimizer_step, prepare_resumable, recipe_logger, shard_indices,
                             total_grad_norm)
from common.validate import Choice, Float, Int
from reward_models.lmm_judge import check_judge_directory
from reward_models.local_model import save_local
from reward_models.tiny import QWEN_1_5_CHAT_TEMPLATE
from reward_models.training import JudgeCollator, answer_token_loss, parameter_groups

SETTINGS = (Int("max_steps", min=1, optional=True), Float("epochs", min=0), Int("per_device_batch_size", min=1),
            Int("gradient_accumulation_steps", min=1), Int("checkpoint_every", min=1), Int("keep_checkpoints", min=1),
            Int("log_every", min=1), Float("optim.lr", min=0), Float("optim.vision_lr", min=0, optional=True),
            Float("optim.weight_decay", min=0), Float("optim.max_grad_norm", min=0, optional=True),
            Float("lr_scheduler.warmup_ratio", min=0, max=1), Choice("mixed_precision", ["no", "fp16", "bf16"]),
            Int("debug_exit_after_step", min=1, optional=True), Int("seed"))
IGNORE = ("debug_exit_after_step", "log_every", "keep_checkpoints", "wandb")


def run(cfg: DictConfig) -> Path:
    check(cfg, "train_judge", SETTINGS)
    accelerator = Accelerator(cpu=cfg.device == "cpu", mixed_precision=cfg.mixed_precision)
    torch.manual_seed(cfg.seed)  # LoRA adapters are initialised randomly

    # ---- parts
    if cfg.init is None:
        model, processor = build_judge(cfg, cfg.model_dir)
    else:  # a freshly initialised judge (the shapes world's tiny one) instead of model_dir; each process builds the
        with tempfile.TemporaryDirectory() as init:  # same bytes (the builder is seeded), nothing is written to the run
            model, processor = build_judge(cfg, instantiate(cfg.init, directory=init))
    groups = parameter_groups(
        model, lr=cfg.optim.lr, vision_lr=cfg.optim.vision_lr, weight_decay=cfg.optim.weight_decay,
        train_vision_tower=cfg.tune.vision_tower, train_projector=cfg.tune.projector,
        train_language_model=cfg.tune.language_model,
    )
    dataset = instantiate(cfg.judge_data)
    collate = JudgeCollator(processor, chat_template=QWEN_1_5_CHAT_TEMPLATE)
    accum, world, rank = cfg.gradient_accumulation_steps, accelerator.num_processes, accelerator.process_index
    per_step = cfg.per_device_batch_size * accum * world
    max_steps = cfg.max_steps or math.ceil(cfg.epochs * len(dataset) / per_step)
    optimizer = instantiate(cfg.optim.optimizer)(groups)
    warmup = round(cfg.lr_scheduler.warmup_ratio * max_steps)
    lr_scheduler = get_cosine_schedule_with_warmup(optimizer, warmup, max_steps)
    if accelerator.state.deepspeed_plugin is not None:
        # No DataLoader goes through prepare() (batches come from shard_indices); DeepSpeed still needs this size.
        ds_config = accelerator.state.deepspeed_plugin.deepspeed_config
        ds_config["train_micro_batch_size_per_gpu"] = cfg.per_device_batch_size
    run_dir = open_run(cfg, ignore=IGNORE, main_process=accelerator.is_main_process, device=accelerator.device).path
    accelerator.wait_for_everyone()
    model, optimizer, start = prepare_resumable(accelerator, run_dir, model, optimizer, lr_scheduler,
                                                keep=cfg.keep_checkpoints)
    logger = recipe_logger(accelerator, run_dir, start, cfg)

    # ---- loop
    for step in tqdm(range(start, max_steps), desc="train_judge", initial=start, total=max_steps,
                     disable=not accelerator.is_main_process, dynamic_ncols=True):
        total = torch.zeros((), device=accelerator.device)
        tokens = 0
        for micro in range(accum):
            first = step * per_step + (micro * world + rank) * cfg.per_device_batch_size
            indices = shard_indices(len(dataset), cfg.seed, first, cfg.per_device_batch_size)
            batch = {k: v.to(accelerator.device) for k, v in collate([dataset[i] for i in indices]).items()}
            labels = batch.pop("labels")
            sync = contextlib.nullcontext() if micro == accum - 1 else accelerator.no_sync(model)
            with sync, accelerator.autocast():
                logits = model(**batch, use_cache=False).logits  # [B, L, V]
                loss, count = answer_token_loss(logits, labels)
                accelerator.backward(loss / accum)
            total += loss.detach() / accum
            tokens += int(count)
        grad_norm = total_grad_norm(accelerator, model, cfg.optim.max_grad_norm)
        loss_value = accelerator.reduce(total, reduction="mean")
        optimizer_step(accelerator, run_dir, step + 1, optimizer, lr_scheduler, loss=loss_value, grad_norm=grad_norm)

        if (step + 1) % cfg.log_every == 0:
            logger.log(step + 1, {"train/loss": loss_value.item(), "train/lr": lr_scheduler.get_last_lr()[0],
                                  "train/answer_tokens": tokens, "train/grad_norm": float(grad_norm)})
        after_step(accelerator, run_dir, step + 1, every=cfg.checkpoint_every, last=max_steps,
                   keep=cfg.keep_checkpoints, model=model, exit_after=cfg.debug_exit_after_step)

    # ---- save: a plain transformers judge directory (LoRA merged), loadable by LMMYesNoJudge
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        final = accelerator.unwrap_model(model)
        final = final.merge_and_unload() if cfg.lora is not None else final
        check_finite_tensors(final.state_dict(), f"{run_dir}: final judge weights")
        save_local(final, processor, run_dir / "final")
        accelerator.print(f"saved {run_dir / 'final'}")
    logger.close()
    return run_dir


def build_judge(cfg: DictConfig, model_dir: str | Path):
    """The judge to train (full model, or wrapped with LoRA adapters) and its processor, from a local directory."""
    model_dir = check_judge_directory(model_dir)
    processor = LlavaOnevisionProcessor.from_pretrained(model_dir, local_files_only=True)
    model = LlavaOnevisionForConditionalGeneration.from_pretrained(
        model_dir, dtype=getattr(torch, cfg.dtype), local_files_only=True, use_safetensors=True
    )
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    if cfg.lora is not None:
        model = get_peft_model(model, instantiate(cfg.lora))
    return model.train(), processor


if __name__ == "__main__":
    hydra.main(config_path="../configs", config_name="train_judge", version_base="1.3")(run)()
