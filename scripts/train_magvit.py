"""Recipe: train a tiny MAGVIT-v2 (lookup-free quantization) on rendered shapes-world scenes, then tokenize.

    python scripts/train_magvit.py +experiment=shapes/magvit run_dir=runs/shapes/magvit

Reads top to bottom: check settings -> data (scenes of the train split rendered in memory) -> model -> open the run
directory -> explicit loop (L1 + L2 reconstruction + LFQ commitment and entropy losses, :mod:`showo.magvit_loss`) ->
save ``<run>/final`` -> acceptance (GenEval judge + exact detector on reconstructions of held-out eval-split scenes,
``<run>/eval.json``, :mod:`eval.shapes.tokenizer_check`) -> tokenize the training lines for the Show-o recipe
(``<run>/tokens``). Batches are drawn from ``(seed, step)`` and the state is checkpointed with accelerate, so a killed
run resumes; a non-finite loss stops it before the update.
"""
from __future__ import annotations

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
from common.training import (MetricsLogger, after_step, optimizer_step, prepare_resumable, shard_indices,
                             total_grad_norm)
from common.validate import Choice, Float, Int
from eval.shapes.data import render_pixels
from eval.shapes.suite import ShapesSuite, build_shapes_suite, images_per_line, training_lines
from eval.shapes.tokenizer_check import reconstruction_accuracy
from showo.data import tokenize_images, write_tokenized_dataset
from showo.magvit import MagvitConfig, MAGVITv2
from showo.magvit_loss import magvit_loss

SETTINGS = (Int("max_steps", min=1), Int("batch_size", min=1), Int("train_images_per_prompt", min=1),
            Int("eval_images_per_prompt", min=1), Int("checkpoint_every", min=1), Int("keep_checkpoints", min=1),
            Int("log_every", min=1), Float("optim.lr", min=0), Float("loss.foreground_weight", min=0),
            Int("loss.foreground_dilation", min=0), Choice("tokenize.source", ["space", "split"]),
            Int("tokenize.images_per_prompt", min=0), Int("debug_exit_after_step", min=1, optional=True), Int("seed"))
IGNORE = ("debug_exit_after_step", "log_every", "keep_checkpoints")


def tokenize_training_set(vq: MAGVITv2, suite: ShapesSuite, out: Path, *, source: str, images_per_prompt: int,
                          images_per_tag: int, seed: int) -> dict:
    """Render the training lines (``source``: ``"split"`` or ``"space"``), tokenize them with ``vq`` and write the
    Show-o recipe's dataset ``out/{prompts.jsonl,codes.safetensors}``; returns counts for the log."""
    lines = training_lines(suite, source)
    counts = images_per_line(lines, images_per_prompt, images_per_tag)
    prompts, pixels = render_pixels(lines, suite.config.world, counts, seed)
    with torch.no_grad():
        codes = tokenize_images(vq, pixels.to(next(vq.parameters()).device))
    write_tokenized_dataset(out, prompts, codes.cpu())
    per_tag: dict[str, int] = {}
    for line, n in zip(lines, counts):
        per_tag[line["tag"]] = per_tag.get(line["tag"], 0) + n
    return {"source": source, "lines": len(lines), "images": len(prompts), "images_per_tag": per_tag}


def run(cfg: DictConfig) -> Path:
    check(cfg, "train_magvit", SETTINGS)
    accelerator = Accelerator(cpu=cfg.device == "cpu")
    torch.manual_seed(cfg.seed)  # MAGVIT-v2 uses torch's default initialisation

    # ---- parts
    suite = build_shapes_suite(instantiate(cfg.data))
    world = suite.config.world
    vq_config = MagvitConfig.from_dict(OmegaConf.to_container(cfg.magvit), source="train_magvit.yaml: magvit")
    if vq_config.resolution != world.canvas_size:
        raise ValueError(f"magvit.resolution={vq_config.resolution} must equal data.world.canvas_size={world.canvas_size}")
    _, pixels = render_pixels(suite.train, world, cfg.train_images_per_prompt, cfg.seed)  # [M, 3, S, S]
    model = MAGVITv2(vq_config).train()
    optimizer = instantiate(cfg.optim.optimizer)(model.parameters())
    lr_scheduler = get_cosine_schedule_with_warmup(optimizer, cfg.lr_scheduler.warmup_steps, cfg.max_steps)
    run_dir = open_run(cfg, ignore=IGNORE, device=accelerator.device).path
    model, optimizer, start = prepare_resumable(accelerator, run_dir, model, optimizer, lr_scheduler,
                                                keep=cfg.keep_checkpoints)
    logger = MetricsLogger(run_dir, True, start)

    # ---- loop
    for step in tqdm(range(start, cfg.max_steps), desc="train_magvit", initial=start, total=cfg.max_steps,
                     dynamic_ncols=True):
        batch = pixels[shard_indices(len(pixels), cfg.seed, step * cfg.batch_size, cfg.batch_size)]
        batch = batch.to(accelerator.device)
        losses = magvit_loss(model(batch), batch, cfg.loss.l1_weight, cfg.loss.l2_weight, cfg.loss.foreground_weight,
                             cfg.loss.foreground_dilation)
        accelerator.backward(losses["loss"])
        optimizer_step(accelerator, run_dir, step + 1, optimizer, lr_scheduler, loss=losses["loss"],
                       grad_norm=total_grad_norm(accelerator, model, None))
        if (step + 1) % cfg.log_every == 0:
            logger.log(step + 1, {f"train/{k}": v.item() for k, v in losses.items()})
        after_step(accelerator, run_dir, step + 1, every=cfg.checkpoint_every, last=cfg.max_steps,
                   keep=cfg.keep_checkpoints, model=model, exit_after=cfg.debug_exit_after_step)

    # ---- save, check, tokenize
    vq = accelerator.unwrap_model(model).eval()
    check_finite_tensors(vq.state_dict(), f"{run_dir}: final MAGVIT-v2 weights")
    vq.save_pretrained(run_dir / "final")
    report = reconstruction_accuracy(vq, suite.eval, world, cfg.eval_images_per_prompt, seed=cfg.seed + 1)
    atomic_write_json(run_dir / "eval.json", report)
    print(f"saved {run_dir / 'final'}; judge accuracy on eval-split reconstructions "
          f"{report['reconstruction_accuracy']:.3f} (originals {report['original_accuracy']:.3f})")
    if cfg.tokenize.images_per_prompt > 0:
        stats = tokenize_training_set(vq, suite, run_dir / "tokens", source=cfg.tokenize.source,
                                      images_per_prompt=cfg.tokenize.images_per_prompt,
                                      images_per_tag=cfg.tokenize.images_per_tag, seed=cfg.tokenize.seed)
        print(f"tokenized {stats['images']} images of {stats['lines']} training lines ({stats['source']}; per task "
              f"{stats['images_per_tag']}) -> {run_dir / 'tokens'}")
    logger.close()
    return run_dir


if __name__ == "__main__":
    hydra.main(config_path="../configs", config_name="train_magvit", version_base="1.3")(run)()
