"""Recipe: PARM++ self-correction data from the judge's own answers on generated images (paper §7).

    python scripts/build_reflection_data.py prompts=data/train_prompts.txt run_dir=runs/parmpp/data
    python scripts/train_showo.py model=showo_256 dataset=self_correction \
        dataset.directory=runs/parmpp/data/self_correction run_dir=runs/parmpp/corrector

Reads top to bottom: check settings -> prompts -> open the run directory -> three fingerprinted, resumable stages
(:class:`common.stages.Stages`): ``generate`` (``candidates_per_prompt`` images per prompt from the base Show-o, one
:class:`search.pool.PoolEntry` per prompt in ``pool/``), ``reflect`` (the PARM++ judge's yes/no and explanation of
every candidate, into the same entries, resumable per prompt), ``groups`` (``self_correction/``: groups.jsonl +
codes.safetensors, :mod:`search.reflection_data`). Returns the ``self_correction/`` directory.
"""
from __future__ import annotations

import functools
from pathlib import Path

import hydra
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from common.recipe import build_generator, check, open_run
from common.stages import Stages
from common.validate import File, Int
from dpo.iterative import generate_pools, read_prompts
from search.reflection_data import reflect_pools, self_correction_groups

SETTINGS = (File("prompts"), Int("candidates_per_prompt", min=2), Int("groups_per_prompt", min=1),
            Int("batch_size", min=1), Int("seed"))


def run(cfg: DictConfig) -> Path:
    check(cfg, "build_reflection_data", SETTINGS)
    prompts = read_prompts(cfg.prompts)
    run_dir = open_run(cfg, ignore=("batch_size",))
    stages = Stages(run_dir, cfg.if_exists)
    pool, out = run_dir.path / "pool", run_dir.path / "self_correction"
    generator = functools.cache(lambda: build_generator(cfg.model))  # loaded only by a stage with work to do
    model = OmegaConf.to_container(cfg.model, resolve=True)

    def generate() -> None:
        _, pipe, sampling = generator()
        with torch.no_grad():
            generate_pools(pipe, prompts, pool, sampling, num_candidates=cfg.candidates_per_prompt,
                           batch_size=cfg.batch_size, seed=cfg.seed, round_index=0)

    def reflect() -> None:
        judge = instantiate(cfg.judge)
        with torch.no_grad():
            reflect_pools(judge, generator()[1], prompts, pool, cfg.batch_size)

    stages("generate", {"model": model, "candidates": cfg.candidates_per_prompt, "seed": cfg.seed}, generate)
    stages("reflect", {"judge": OmegaConf.to_container(cfg.judge, resolve=True)}, reflect, inputs={"pool": pool})
    stages("groups", {"groups_per_prompt": cfg.groups_per_prompt, "seed": cfg.seed},
           lambda: self_correction_groups(prompts, pool, out, groups_per_prompt=cfg.groups_per_prompt, seed=cfg.seed),
           inputs={"pool": pool})
    print(f"self-correction groups: {run_dir.stage_info('groups')} -> {out}")
    return out


@hydra.main(config_path="../configs", config_name="build_reflection_data", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
