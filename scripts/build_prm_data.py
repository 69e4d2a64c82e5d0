"""Recipe: the fine-tuned PRM's training data at real scale, labelled by roll-outs (imagegen_cot.md §5).

    python scripts/build_prm_data.py prompts=data/prm_train_metadata.jsonl run_dir=runs/prm/data
    python scripts/train_judge.py judge_data=prm judge_data.paths=[runs/prm/data/prm.jsonl] run_dir=runs/prm/judge

Wiring only: the prompts are a GenEval-style metadata JSONL of *training* prompts (``tag``, ``include``, ``exclude``,
``prompt``; the judge needs the requirements), refused when one is a prompt of ``held_out`` (GenEval's evaluation
metadata, ``GENEVAL_METADATA``); the generator is the ``model`` group (``showo_256``: the official Show-o, 18 steps,
guidance 1.75); the labeller is the ``labeller`` group (``geneval``: GenEval's Mask2Former detector, CLIP colour
classifier and judge, :class:`eval.geneval.labeller.GenevalLabeller`); :func:`reward_models.prm_data.build_prm_data`
does the work (paths, roll-outs with ``reward_models.rollouts``, ``prm.jsonl`` of ``reward_models.data.prm_example``).
Reads top to bottom: check -> prompts -> labeller and Show-o -> open the run directory -> data (resumable per prompt).
"""
from __future__ import annotations

import time
from pathlib import Path

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig

from common.recipe import build_generator, check, open_run
from common.validate import Bool, ConfigError, File, Int
from eval.geneval.prompts import load_prompts
from reward_models.prm_data import PRMDataConfig, build_prm_data
from showo.pipeline import DEFAULT_SAMPLING

SETTINGS = (File("prompts"), File("held_out", optional=True), Int("paths_per_prompt", min=1), Int("rollouts", min=1),
            Bool("label_final"), Int("batch_size", min=1), Int("seed"))


def training_lines(cfg: DictConfig) -> list[dict]:
    """The metadata lines of ``cfg.prompts`` (validated: errors name file and line), none of them a ``held_out``
    prompt (a GenEval prompt in the PRM's data would train the judge on the benchmark)."""
    lines = [spec.raw for spec in load_prompts(cfg.prompts)]
    if cfg.held_out is not None:
        held = {spec.prompt for spec in load_prompts(cfg.held_out)}
        leaked = [(n, line["prompt"]) for n, line in enumerate(lines, start=1) if line["prompt"] in held]
        if leaked:
            raise ConfigError(f"build_prm_data: prompts = {cfg.prompts!r} holds {len(leaked)} prompt(s) of held_out = "
                              f"{cfg.held_out!r}, e.g. line {leaked[0][0]}: {leaked[0][1]!r} (use training prompts)")
    return lines


def data_config(cfg: DictConfig, sampling: dict) -> PRMDataConfig:
    """The sampler's steps and guidance (the model group's, never overridden here) + this recipe's sizes."""
    sampling = {**DEFAULT_SAMPLING, **sampling}
    steps = None if cfg.rollout_steps is None else tuple(int(s) for s in cfg.rollout_steps)
    config = PRMDataConfig(num_inference_steps=int(sampling["num_inference_steps"]),
                           guidance_scale=float(sampling["guidance_scale"]), paths_per_prompt=cfg.paths_per_prompt,
                           rollout_steps=steps, rollouts=cfg.rollouts, label_final=cfg.label_final, seed=cfg.seed,
                           batch_size=cfg.batch_size)
    try:
        config.steps()
    except ValueError as err:
        raise ConfigError(f"build_prm_data: rollout_steps = {cfg.rollout_steps}: {err}") from err
    return config


def run(cfg: DictConfig) -> Path:
    check(cfg, "build_prm_data", SETTINGS)
    lines = training_lines(cfg)
    data_config(cfg, dict(cfg.model.get("sampling") or {}))  # a bad step is named before any model is loaded
    labeller = instantiate(cfg.labeller)
    unknown = sorted({req["class"] for line in lines for req in [*line.get("include", []), *line.get("exclude", [])]}
                     - set(labeller.class_names))
    if unknown:
        raise ConfigError(f"build_prm_data: prompts = {cfg.prompts!r} names classes the detector lacks: {unknown}")
    _, pipe, sampling = build_generator(cfg.model)
    config = data_config(cfg, sampling)
    out = open_run(cfg, ignore=("batch_size",)).path
    start = time.perf_counter()
    summary = build_prm_data(pipe, lines, labeller, out, config)
    print(f"PRM data: {summary['examples']} step examples ({summary['yes']} yes) of {summary['lines']} prompts -> "
          f"{out / 'prm.jsonl'} in {time.perf_counter() - start:.0f} s")
    return out


if __name__ == "__main__":
    hydra.main(config_path="../configs", config_name="build_prm_data", version_base="1.3")(run)()
