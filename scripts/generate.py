"""Recipe: generate images for a prompt set into the official GenEval folder layout.

    python scripts/generate.py model=showo_256 prompts=evaluation_metadata.jsonl run_dir=runs/showo_256
    python scripts/generate.py model=janus_pro_7b +cot@model.cot=t2i_r1 prompts=... device=cuda   # Janus-Pro + CoT
    accelerate launch --num_processes 8 scripts/generate.py ...      # prompts sharded over processes

Any generator of the generator protocol (:mod:`common.generator`). A generator that writes a semantic CoT (Janus-Pro
with ``model.cot``) gets it saved beside each image as ``<index>/samples/<k:04d>.cot.txt`` (the GenEval evaluator
reads only ``<k:04d>.png``).

Reads top to bottom: check settings -> prompts -> model (errors so far leave nothing on disk) -> open the run
directory (resumes only a run of the same config and inputs, :mod:`common.rundir`) -> generate prompt by prompt.
Image k of prompt i is drawn with its own generator seeded from (seed, i, k): the files do not depend on the batch
size or the number of processes. A prompt folder is complete once its metadata.jsonl exists (written last,
atomically), so a killed run restarted with the same arguments skips finished prompts and produces the same files.
"""
from __future__ import annotations

import os
from pathlib import Path

import hydra
import torch
from accelerate import PartialState
from omegaconf import DictConfig
from tqdm import tqdm

from common.recipe import build_generator, check, open_run
from common.seeding import generators, image_seed
from common.validate import Bool, Device, File, Int
from eval.geneval.layout import write_prompt_folder
from eval.geneval.prompts import load_prompt_set
from eval.shapes.render import image_grid
from showo.prompting import warn_unrepresentable

SETTINGS = (File("prompts"), File("class_names", optional=True), Int("images_per_prompt", min=1),
            Int("batch_size", min=1), Int("seed"), Bool("grid"), Device("device"),
            Int("debug_exit_after_prompts", min=1, optional=True))
# never change an image: per-image generators make the batch irrelevant; the kill hook only stops early
IGNORE = ("batch_size", "debug_exit_after_prompts")


def run(cfg: DictConfig) -> Path:
    """Generate every prompt of ``cfg.prompts`` into ``<run_dir>/images``; returns the run directory."""
    check(cfg, "generate", SETTINGS)
    specs = load_prompt_set(cfg.prompts, cfg.class_names)
    bundle, pipe, sampling = build_generator(cfg.model)
    if not pipe.can_decode:
        raise FileNotFoundError(f"model.bundle ({cfg.model.bundle.get('directory', cfg.model.bundle)}) has no image "
                                "tokenizer (vq/): it can make tokens but no images")
    warn_unrepresentable(bundle.tokenizer, [s.prompt for s in specs])
    state = PartialState(cpu=str(cfg.device) == "cpu")
    run_dir = open_run(cfg, ignore=IGNORE, main_process=state.is_main_process, device=cfg.device).path
    state.wait_for_everyone()

    images_dir = run_dir / "images"
    mine = [s for s in specs if s.index % state.num_processes == state.process_index]
    todo = [s for s in mine if not (images_dir / f"{s.index:05d}" / "metadata.jsonl").is_file()]
    n = cfg.images_per_prompt
    jobs = [(spec, k) for spec in todo for k in range(n)]  # one job = one image
    pending: dict[int, list] = {}
    written = 0
    bar = tqdm(total=len(jobs), desc=f"generate [{state.process_index}]", disable=not jobs, dynamic_ncols=True)
    for start in range(0, len(jobs), cfg.batch_size):
        batch = jobs[start: start + cfg.batch_size]
        seeds = [image_seed(cfg.seed, spec.index, k) for spec, k in batch]
        with torch.no_grad():
            result = pipe([spec.prompt for spec, _ in batch], generator=generators(seeds, cfg.device), **sampling)
        cots = result.cots if result.cots is not None else [None] * len(batch)
        for (spec, k), image, cot in zip(batch, result.images, cots):
            pending.setdefault(spec.index, []).append((image, cot))
            if len(pending[spec.index]) == n:
                images, texts = zip(*pending.pop(spec.index))
                write_prompt_folder(images_dir, spec, images, image_grid(images, nrow=n) if cfg.grid else None,
                                    cots=texts)
                written += 1
                if cfg.debug_exit_after_prompts is not None and written >= cfg.debug_exit_after_prompts:
                    os._exit(17)  # testing aid: die like a killed process, no cleanup
        bar.update(len(batch))
    bar.close()
    state.wait_for_everyone()
    if state.is_main_process:
        done = sum((images_dir / f"{s.index:05d}" / "metadata.jsonl").is_file() for s in specs)
        print(f"{done}/{len(specs)} prompts complete in {images_dir}")
    return run_dir


if __name__ == "__main__":
    hydra.main(config_path="../configs", config_name="generate", version_base="1.3")(run)()
