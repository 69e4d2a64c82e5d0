"""Recipe: a generator's images for T2I-CompBench or WISE (docs/benchmarks.md, "Image layouts").

    python scripts/generate_benchmark.py benchmark=wise model=janus_bundle model.bundle.directory=DIR run_dir=RUN
    accelerate launch --num_processes 8 scripts/generate_benchmark.py benchmark=compbench ...   # sharded

Reads top to bottom: check settings -> jobs (one per image, eval/jobs.py) -> generator (errors so far leave nothing on
disk) -> open the run directory -> generate the missing images into ``<run_dir>/images`` in the benchmark's layout,
each from its own generator seeded from (seed, job key): the files do not depend on the batch size or the process
count, and a killed run restarted with the same arguments writes only what is missing. Then score them with
``scripts/t2i_r1/eval_compbench.sh`` / ``eval_wise.sh``.
"""
from __future__ import annotations

from pathlib import Path

import hydra
import torch
from accelerate import PartialState
from hydra.utils import instantiate
from omegaconf import DictConfig
from tqdm import tqdm

from common.io import atomic_write_bytes, png_bytes
from common.recipe import build_generator, check, open_run
from common.seeding import generators, hash_seed
from common.validate import Int

SETTINGS = (Int("batch_size", min=1), Int("seed"), Int("limit", min=1, optional=True))
IGNORE = ("batch_size",)


def run(cfg: DictConfig) -> Path:
    """Generate every missing image of the benchmark into ``<run_dir>/images``; returns the run directory."""
    check(cfg, "generate_benchmark", SETTINGS)
    make_jobs = instantiate(cfg.benchmark)
    make_jobs(Path(cfg.run_dir) / "images")  # reads the prompt files: a missing one is named before anything is written
    _, pipe, sampling = build_generator(cfg.model)
    state = PartialState(cpu=str(cfg.device) == "cpu")
    run_dir = open_run(cfg, ignore=IGNORE, main_process=state.is_main_process, device=cfg.device).path
    jobs = make_jobs(run_dir / "images")[: cfg.limit]
    state.wait_for_everyone()
    todo = [job for n, job in enumerate(jobs) if n % state.num_processes == state.process_index and not job.path.is_file()]
    for start in tqdm(range(0, len(todo), cfg.batch_size), desc=f"generate [{state.process_index}]",
                      disable=not todo):
        batch = todo[start: start + cfg.batch_size]
        seeds = [hash_seed(cfg.seed, *job.key) for job in batch]
        with torch.no_grad():
            images = pipe([job.prompt for job in batch], generator=generators(seeds, cfg.device), **sampling).images
        for job, image in zip(batch, images):
            atomic_write_bytes(job.path, png_bytes(image))
    state.wait_for_everyone()
    if state.is_main_process:
        print(f"{sum(job.path.is_file() for job in jobs)}/{len(jobs)} images in {run_dir / 'images'}")
    return run_dir


@hydra.main(config_path="../configs", config_name="generate_benchmark", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
