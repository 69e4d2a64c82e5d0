"""Recipe: iterative DPO (imagegen_cot.md §8.1). R rounds of generate (current policy) -> judge -> pairs -> train.

    python scripts/iterative_dpo.py model=showo_256 reward@iterative.judge=orm_finetuned \
        iterative.prompts=data/dpo/prompts.txt iterative.rounds=2 run_dir=runs/dpo_iter
    ... iterative.launcher='[accelerate,launch,--config_file,configs/accelerate/deepspeed_zero2.yaml,--num_processes,5]'

The launcher's process count must divide ``train.global_batch_size`` (the paper's 10 pairs: 1, 2, 5 or 10 processes);
it is checked before anything is generated.

Every stage of every round is a fingerprinted stage of one run directory (:class:`common.stages.Stages`): a finished
stage is skipped when the command is run again with the same settings, a finished stage with other settings is an
error naming them; generation and judging resume per prompt, and training resumes from its own checkpoints. Candidate
pools are :class:`search.pool.PoolEntry` files (:mod:`dpo.iterative`). Round ``r`` starts from round ``r-1``'s
``train/final``; the reference is that same model (``iterative.reference=previous_round``, as in the shipped config)
or the initial model (``initial``). Training runs ``scripts/train_dpo.py`` as a child process (so any accelerate
launcher works) on ``round_<r>/train_config.yaml``, the full config of that round.
"""
from __future__ import annotations

import functools
import subprocess
import sys
from pathlib import Path

import hydra
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from common.io import atomic_write_json, atomic_write_text
from common.recipe import build_generator, check, open_run
from common.stages import Stages
from common.validate import Choice, File, Int
from dpo.data import accumulation
from dpo.iterative import (RoundDir, build_round_pairs, generate_pools, judge_pools, launcher_processes, read_prompts,
                           write_pairs)
from dpo.settings import TRAIN_SETTINGS
from search.pool import load_entry

TRAIN_SCRIPT = Path(__file__).resolve().parent / "train_dpo.py"
CONFIG_NAME = "train_dpo"  # the entry config this recipe shares with scripts/train_dpo.py
SETTINGS = (File("iterative.prompts"), Int("iterative.rounds", min=1), Int("iterative.candidates_per_prompt", min=2),
            Int("iterative.generation_batch_size", min=1), Choice("iterative.reference", ["previous_round", "initial"]),
            *TRAIN_SETTINGS)  # the rounds' training runs as a child process: its settings are checked here first
IGNORE = ("iterative.stop_after", "iterative.generation_batch_size", "iterative.launcher", "train.stop_after_steps")


def round_model(cfg: DictConfig, previous: RoundDir | None) -> dict:
    """The policy's model config for a round: the configured model in round 0, the previous round's bundle after."""
    base = OmegaConf.to_container(cfg.model, resolve=True)
    if previous is None:
        return base
    bundle = {"_target_": "showo.factory.load_bundle", "directory": str(previous.final.resolve()), "device": cfg.device}
    return {**base, "bundle": bundle}


def round_train_config(cfg: DictConfig, model: dict, rd: RoundDir, reference_source: dict | None) -> dict:
    """scripts/train_dpo.py's config for this round: the parent's train/dpo/masking sections, this round's data."""
    train_cfg = OmegaConf.to_container(cfg, resolve=True)
    for key in ("iterative", "hydra"):
        train_cfg.pop(key, None)
    train_cfg.update(model=model, run_dir=str(rd.train.resolve()), data={"pairs": str(rd.pairs.resolve())})
    if reference_source is not None:
        train_cfg["dpo"]["reference"]["source"] = reference_source
    train_cfg["hydra"] = {"run": {"dir": "."}, "output_subdir": None, "job": {"chdir": False}}
    train_cfg["defaults"] = [{"override hydra/job_logging": "stdout"}, "_self_"]  # as configs/runtime/default.yaml
    return train_cfg


def run(cfg: DictConfig) -> Path:
    it = cfg.iterative
    if OmegaConf.select(cfg, "iterative.judge") is None:
        raise ValueError("iterative.judge is not set: choose an OutcomeJudge, e.g. reward@iterative.judge=orm_finetuned")
    check(cfg, "iterative_dpo", SETTINGS)
    processes = launcher_processes(it.launcher)
    if processes is not None:  # the global batch must split over the training processes: fail before generating
        accumulation(cfg.train.global_batch_size, cfg.train.per_device_batch_size, processes)
    prompts = read_prompts(it.prompts)
    initial = build_generator(cfg.model)  # a missing or broken policy fails here, before the run directory exists
    run = open_run(cfg, ignore=IGNORE)
    stages = Stages(run, cfg.if_exists)
    judge, previous, summary = None, None, []
    for r in range(it.rounds):
        rd = RoundDir(run.path / f"round_{r}")
        model_cfg = round_model(cfg, previous)
        inputs = {} if previous is None else {"policy": previous.final}
        stage_cfg = {"model": model_cfg, "candidates": it.candidates_per_prompt, "seed": cfg.seed}

        # 1-2. generate N candidates per prompt with the current policy, judge them (one PoolEntry per prompt);
        # the policy is loaded only when one of the two stages has work to do
        generator = functools.cache(lambda mc=model_cfg, r=r: initial if r == 0 else build_generator(OmegaConf.create(mc)))

        def generate_stage():
            _, pipe, sampling = generator()
            with torch.no_grad():
                generate_pools(pipe, prompts, rd.pool, sampling, num_candidates=it.candidates_per_prompt,
                               batch_size=it.generation_batch_size, seed=cfg.seed, round_index=r)

        def judge_stage():
            nonlocal judge
            judge = judge if judge is not None else instantiate(it.judge)
            with torch.no_grad():
                judge_pools(judge, generator()[1], prompts, rd.pool, it.generation_batch_size, r)

        stages(f"round_{r}/generate", stage_cfg, generate_stage, inputs=inputs)
        if _should_stop(it, r, "generate"):
            return run.path
        stages(f"round_{r}/judge", {**stage_cfg, "judge": OmegaConf.to_container(it.judge, resolve=True)},
               judge_stage, inputs=inputs)
        generator.cache_clear()  # free the policy before training (a child process) starts
        initial = None
        if _should_stop(it, r, "judge"):
            return run.path

        # 3. preference pairs (prompts whose candidates all got the same label give none)
        def pairs_stage():
            pairs = build_round_pairs(prompts, rd.pool, instantiate(it.pairing), cfg.seed, r)
            write_pairs(rd.pairs, pairs)
            return {"pairs": len(pairs), "prompts": len(prompts)}

        stages(f"round_{r}/pairs", {"pairing": OmegaConf.to_container(it.pairing, resolve=True), "seed": cfg.seed},
               pairs_stage, inputs={"pool": rd.pool})
        if _should_stop(it, r, "pairs"):
            return run.path

        # 4. train (child process; resumes from its own checkpoints if this command is re-run)
        source = OmegaConf.to_container(cfg.model.bundle, resolve=True) if it.reference == "initial" and r > 0 else None
        train_cfg = round_train_config(cfg, model_cfg, rd, source)

        def train_stage():
            atomic_write_text(rd.root / "train_config.yaml", OmegaConf.to_yaml(OmegaConf.create(train_cfg)))
            launcher = [str(a) for a in it.launcher] if it.launcher else [sys.executable]  # YAML lists hold ints
            subprocess.run([*launcher, str(TRAIN_SCRIPT), "--config-path", str(rd.root.resolve()),
                            "--config-name", "train_config"], check=True)
            if not (rd.final / "showo").is_dir():
                raise RuntimeError(f"round {r}: training finished without writing {rd.final}")

        stages(f"round_{r}/train", train_cfg, train_stage, inputs={"pairs": rd.pairs},
               ignore=("run_dir", "hydra", "defaults"))
        summary.append(_round_summary(rd, r, run.stage_info(f"round_{r}/pairs")["pairs"]))
        previous = rd
    atomic_write_json(run.path / "rounds.json", summary)
    return previous.final


def _should_stop(it: DictConfig, r: int, stage: str) -> bool:
    """Testing aid: ``iterative.stop_after="<round>:<stage>"`` returns as if killed after that stage."""
    return it.stop_after == f"{r}:{stage}"


def _round_summary(rd: RoundDir, r: int, pairs: int) -> dict:
    scores = [s for p in sorted(rd.pool.glob("*.json")) for s in load_entry(p).outcome_scores]
    return {"round": r, "mean_judge_score": sum(scores) / len(scores), "pairs": pairs, "policy": str(rd.final)}


@hydra.main(config_path="../configs", config_name="train_dpo", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
