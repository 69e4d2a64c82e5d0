"""Recipe: iterative DPO (imagegen_cot.md §8.1). R rounds of generate (current policy) -> judge -> pairs -> train.

    python scripts/iterative_dpo.py model=showo_256 reward@iterative.judge=orm_finetuned \
        iterative.prompts=data/dpo/prompts.txt iterative.rounds=2 run_dir=runs/dpo_iter
    ... iterative.launcher='[accelerate,launch,--config_file,configs/accelerate/zero2.yaml]'   # multi-GPU training

Each round has its own folder (see :mod:`dpo.iterative`); a stage that finished is skipped when the command is run
again, generation and judging resume per prompt, and training resumes from its own checkpoints. Round ``r`` starts
from round ``r-1``'s ``train/final``; the reference is that same model (``iterative.reference=previous_round``, as in
the shipped config) or the initial model (``initial``). Training runs ``scripts/train_dpo.py`` as a child process
(so any accelerate launcher works) on ``round_<r>/train_config.yaml``, the full config of that round.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import hydra
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from dpo.iterative import RoundDir, build_round_pairs, generate_pools, judge_pools, read_prompts, write_pairs
from showo.checkpoint import atomic_write_text
from showo.recipe_utils import write_run_config
from showo.scheduler import MaskGITScheduler

TRAIN_SCRIPT = Path(__file__).resolve().parent / "train_dpo.py"


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
    train_cfg["hydra"] = {"run": {"dir": str(rd.train.resolve())}, "job": {"chdir": False}, "output_subdir": None}
    return train_cfg


def main(cfg: DictConfig) -> Path:
    it = cfg.iterative
    if OmegaConf.select(cfg, "iterative.judge") is None:
        raise ValueError("iterative.judge is not set: choose an OutcomeJudge, e.g. reward@iterative.judge=orm_finetuned")
    if it.reference not in ("previous_round", "initial"):
        raise ValueError(f"iterative.reference must be 'previous_round' or 'initial', got {it.reference!r}")
    run_dir = Path(cfg.run_dir)
    write_run_config(run_dir, OmegaConf.to_yaml(cfg, resolve=True))
    prompts = read_prompts(it.prompts)
    sampling = cfg.model.sampling
    judge = None
    summary = []
    previous = None
    for r in range(it.rounds):
        rd = RoundDir(run_dir / f"round_{r}")
        model_cfg = round_model(cfg, previous)

        # 1-2. generate N candidates per prompt with the current policy, judge them
        if not (rd.done("generate") and rd.done("judge")):
            bundle = instantiate(model_cfg["bundle"])
            pipe = bundle.pipeline(MaskGITScheduler(sampling.mask_schedule, sampling.temperature, sampling.temperature_schedule))
            with torch.no_grad():
                if not rd.done("generate"):
                    generate_pools(pipe, prompts, rd.pools, num_candidates=it.candidates_per_prompt,
                                   batch_size=it.generation_batch_size, seed=cfg.seed, round_index=r,
                                   guidance_scale=sampling.guidance_scale, num_inference_steps=sampling.num_inference_steps)
                    rd.mark_done("generate")
                if _should_stop(it, r, "generate"):
                    return run_dir
                if not rd.done("judge"):
                    judge = judge if judge is not None else instantiate(it.judge)
                    judge_pools(judge, pipe, prompts, rd.pools, rd.scores, it.generation_batch_size, r)
                    rd.mark_done("judge")
            del bundle, pipe
        if _should_stop(it, r, "judge"):
            return run_dir

        # 3. preference pairs (prompts whose candidates all got the same label give none)
        if not rd.done("pairs"):
            pairs = build_round_pairs(prompts, rd.pools, rd.scores, instantiate(it.pairing), cfg.seed, r)
            write_pairs(rd.pairs, pairs)
            rd.mark_done("pairs", {"pairs": len(pairs), "prompts": len(prompts)})
        if _should_stop(it, r, "pairs"):
            return run_dir

        # 4. train (child process; resumes from its own checkpoints if this command is re-run)
        if not rd.done("train"):
            source = OmegaConf.to_container(cfg.model.bundle, resolve=True) if it.reference == "initial" and r > 0 else None
            atomic_write_text(rd.root / "train_config.yaml",
                              OmegaConf.to_yaml(OmegaConf.create(round_train_config(cfg, model_cfg, rd, source))))
            launcher = list(it.launcher) if it.launcher else [sys.executable]
            subprocess.run([*launcher, str(TRAIN_SCRIPT), "--config-path", str(rd.root.resolve()),
                            "--config-name", "train_config"], check=True)
            if not (rd.final / "showo").is_dir():
                raise RuntimeError(f"round {r}: training finished without writing {rd.final}")
            rd.mark_done("train")
        summary.append(_round_summary(rd, r))
        previous = rd
    atomic_write_text(run_dir / "rounds.json", json.dumps(summary, indent=2))
    return previous.final


def _should_stop(it: DictConfig, r: int, stage: str) -> bool:
    """Testing aid: ``iterative.stop_after="<round>:<stage>"`` returns as if killed after that stage."""
    return it.stop_after == f"{r}:{stage}"


def _round_summary(rd: RoundDir, r: int) -> dict:
    scores = [s for p in sorted(rd.scores.glob("*.json")) for s in json.loads(p.read_text())["scores"]]
    info = json.loads((rd.root / "pairs.done").read_text())
    return {"round": r, "mean_judge_score": sum(scores) / len(scores), "pairs": info["pairs"], "policy": str(rd.final)}


@hydra.main(config_path="../configs", config_name="train_dpo", version_base="1.3")
def cli(cfg: DictConfig) -> None:
    main(cfg)


if __name__ == "__main__":
    cli()
