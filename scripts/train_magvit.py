"""Recipe: train a tiny MAGVIT-v2 (lookup-free quantization) on rendered shapes-world scenes, then tokenize.

    python scripts/train_magvit.py +experiment=shapes/magvit output_dir=runs/shapes/magvit

Reads top to bottom: config -> data (scenes of the train split rendered in memory) -> model -> explicit loop (L1 + L2
reconstruction + LFQ commitment and entropy losses, :func:`eval.shapes.vq.magvit_loss`) -> save ``<run>/final`` ->
acceptance (GenEval judge + exact detector on reconstructions of held-out eval-split scenes, ``<run>/eval.json``) ->
tokenize the training lines for the Show-o recipe (``<run>/tokens``, :func:`eval.shapes.data.tokenize_training_set`).
Batches are drawn from ``(seed, step)`` and the state is checkpointed with accelerate, so a killed run resumes.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import hydra
import torch
from accelerate import Accelerator
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm
from transformers import get_cosine_schedule_with_warmup

from eval.shapes.data import render_pixels, tokenize_training_set
from eval.shapes.suite import build_shapes_suite
from eval.shapes.vq import magvit_loss, reconstruction_accuracy
from showo.checkpoint import atomic_write_text
from showo.magvit import MAGVITv2, MagvitConfig
from showo.recipe_utils import MetricsLogger, resume, save_checkpoint, shard_indices, write_run_config


@hydra.main(config_path="../configs", config_name="train_magvit", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run_dir = Path(cfg.output_dir)
    accelerator = Accelerator(cpu=cfg.device == "cpu")
    write_run_config(run_dir, OmegaConf.to_yaml(cfg, resolve=True))
    torch.manual_seed(cfg.seed)  # MAGVIT-v2 uses torch's default initialisation

    # ---- parts
    suite = build_shapes_suite(instantiate(cfg.data))
    world = suite.config.world
    _, pixels = render_pixels(suite.train, world, cfg.train_images_per_prompt, cfg.seed)  # [M, 3, S, S]
    vq_config = MagvitConfig.from_dict(OmegaConf.to_container(cfg.magvit), source="train_magvit.yaml: magvit")
    if vq_config.resolution != world.canvas_size:
        raise ValueError(f"magvit.resolution={vq_config.resolution} must equal data.world.canvas_size={world.canvas_size}")
    model = MAGVITv2(vq_config).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.optim.lr, betas=tuple(cfg.optim.betas),
                                  weight_decay=cfg.optim.weight_decay)
    lr_scheduler = get_cosine_schedule_with_warmup(optimizer, cfg.lr_scheduler.warmup_steps, cfg.max_steps)
    model, optimizer = accelerator.prepare(model, optimizer)
    accelerator.register_for_checkpointing(lr_scheduler)
    start = resume(accelerator, run_dir)
    logger = MetricsLogger(run_dir, True, start)

    # ---- loop
    for step in tqdm(range(start, cfg.max_steps), desc="train_magvit", initial=start, total=cfg.max_steps,
                     dynamic_ncols=True):
        batch = pixels[shard_indices(len(pixels), cfg.seed, step * cfg.batch_size, cfg.batch_size)]
        batch = batch.to(accelerator.device)
        losses = magvit_loss(model(batch), batch, cfg.loss.l1_weight, cfg.loss.l2_weight, cfg.loss.foreground_weight,
                             cfg.loss.foreground_dilation)
        accelerator.backward(losses["loss"])
        optimizer.step()
        lr_scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        if (step + 1) % cfg.log_every == 0:
            logger.log(step + 1, {f"train/{k}": v.item() for k, v in losses.items()})
        if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.max_steps:
            save_checkpoint(accelerator, run_dir, step + 1, cfg.keep_checkpoints)
        if cfg.debug_exit_after_step is not None and step + 1 == cfg.debug_exit_after_step:
            os._exit(17)  # testing aid: die like a killed process, no cleanup

    # ---- save, check, tokenize
    vq = accelerator.unwrap_model(model).eval()
    vq.save_pretrained(run_dir / "final")
    report = reconstruction_accuracy(vq, suite.eval, world, cfg.eval_images_per_prompt, seed=cfg.seed + 1)
    atomic_write_text(run_dir / "eval.json", json.dumps(report, indent=1) + "\n")
    print(f"saved {run_dir / 'final'}; judge accuracy on eval-split reconstructions "
          f"{report['reconstruction_accuracy']:.3f} (originals {report['original_accuracy']:.3f})")
    if cfg.tokenize.images_per_prompt > 0:
        stats = tokenize_training_set(vq, suite, run_dir / "tokens", source=cfg.tokenize.source,
                                      images_per_prompt=cfg.tokenize.images_per_prompt,
                                      images_per_tag=cfg.tokenize.images_per_tag, seed=cfg.tokenize.seed)
        print(f"tokenized {stats['images']} images of {stats['lines']} training lines ({stats['source']}; per task "
              f"{stats['images_per_tag']}) -> {run_dir / 'tokens'}")
    logger.close()


if __name__ == "__main__":
    main()
