"""Generate images for a prompt set into the official GenEval folder layout.

    python scripts/generate.py model=showo_256 prompts=evaluation_metadata.jsonl output_dir=runs/showo_256
    accelerate launch --num_processes 8 scripts/generate.py ...      # prompts sharded over processes

Image k of prompt i is drawn with its own generator seeded from (seed, i, k): the files do not depend on the batch
size or the number of processes. A prompt folder is complete once its metadata.jsonl exists (written last, atomically),
so a killed run restarted with the same arguments skips finished prompts and produces the same files.
"""
from __future__ import annotations

import os
from pathlib import Path

import hydra
import torch
from accelerate import PartialState
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from eval.geneval.layout import atomic_write_text, write_prompt_folder
from eval.geneval.prompts import load_prompt_set
from eval.shapes.render import image_grid
from showo.scheduler import MaskGITScheduler
from showo.seeding import generators, image_seed


@hydra.main(config_path="../configs", config_name="generate", version_base="1.3")
def main(cfg: DictConfig) -> None:
    state = PartialState(cpu=str(cfg.device) == "cpu")
    out = Path(cfg.output_dir)
    images_dir = out / "images"
    if state.is_main_process:
        atomic_write_text(out / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))

    specs = load_prompt_set(cfg.prompts, cfg.class_names)
    mine = [s for s in specs if s.index % state.num_processes == state.process_index]
    todo = [s for s in mine if not (images_dir / f"{s.index:05d}" / "metadata.jsonl").is_file()]

    bundle = instantiate(cfg.model.bundle)
    sampling = cfg.model.sampling
    scheduler = MaskGITScheduler(sampling.mask_schedule, sampling.temperature, sampling.temperature_schedule)
    pipe = bundle.pipeline(scheduler)
    n = cfg.images_per_prompt
    jobs = [(spec, k) for spec in todo for k in range(n)]  # one job = one image
    pending: dict[int, list] = {}
    written = 0
    bar = tqdm(total=len(jobs), desc=f"generate [{state.process_index}]", disable=not jobs, dynamic_ncols=True)
    for start in range(0, len(jobs), cfg.batch_size):
        batch = jobs[start: start + cfg.batch_size]
        seeds = [image_seed(cfg.seed, spec.index, k) for spec, k in batch]
        result = pipe([spec.prompt for spec, _ in batch], guidance_scale=sampling.guidance_scale,
                      num_inference_steps=sampling.num_inference_steps, generator=generators(seeds, cfg.device))
        for (spec, k), image in zip(batch, result.images):
            pending.setdefault(spec.index, []).append(image)
            if len(pending[spec.index]) == n:
                images = pending.pop(spec.index)
                write_prompt_folder(images_dir, spec, images, image_grid(images, nrow=n) if cfg.grid else None)
                written += 1
                if cfg.debug_exit_after_prompts is not None and written >= cfg.debug_exit_after_prompts:
                    os._exit(17)  # testing aid: die like a killed process, no cleanup
        bar.update(len(batch))
    bar.close()
    state.wait_for_everyone()
    if state.is_main_process:
        done = sum((images_dir / f"{s.index:05d}" / "metadata.jsonl").is_file() for s in specs)
        print(f"{done}/{len(specs)} prompts complete in {images_dir}")


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
