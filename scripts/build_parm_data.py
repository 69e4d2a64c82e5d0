"""Recipe: a PARM's training data from the generator's own paths alone (issue 13; imagegen_cot.md §6.4, §7).

    python scripts/build_parm_data.py +experiment=shapes/parm_data run_dir=runs/shapes/parm_data

``per_line`` paths of every *training* line (``eval.shapes.suite.training_lines``, never the eval split), each
labelled by the exact judge, give every question a PARM is asked (``reward_models.judge_steps.build_judge_steps``
with ``extras``): potential examples from the clear step images (the path's final verdict, line-balanced), clarity
examples (the world's rule, ``clear_from``), the final images with the ORM question and, for PARM++, reflection
examples and the self-correction groups its corrector learns from (``steps_self_correction/``: a rejected path ->
an accepted path of its line, ``configs/experiment/shapes/self_correction.yaml``). What the paper fine-tunes an ORM
into a PARM with (``configs/experiment/shapes/judge_parm.yaml``).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig

from common.io import atomic_write_text
from common.recipe import check, open_run
from common.validate import Bool, Choice, ConfigError, Dir, Float, Int
from eval.shapes.suite import build_shapes_suite, training_lines
from reward_models.judge_steps import build_judge_steps, checked_clear_steps
from showo.factory import load_bundle
from showo.scheduler import MaskGITScheduler

SETTINGS = (Dir("showo"), Choice("source", ("space", "split")), Int("lines_per_tag", min=1, optional=True),
            Int("per_line", min=1), Int("steps_per_path", min=1), Int("seed"), Int("num_inference_steps", min=2),
            Float("guidance_scale", min=0.0), Int("clear_from", min=1, optional=True), Int("batch_size", min=1),
            Bool("balance"), Choice("potential_label", ("final", "rollouts")), Int("rollouts", min=1))


def run(cfg: DictConfig) -> Path:
    check(cfg, "build_parm_data", SETTINGS)
    try:
        checked_clear_steps(cfg.num_inference_steps, cfg.steps_per_path, cfg.clear_from)
    except ValueError as err:
        raise ConfigError(f"build_parm_data: {err}") from None
    lines = training_lines(build_shapes_suite(instantiate(cfg.data)), cfg.source, cfg.lines_per_tag)
    labeller = instantiate(cfg.labeller)
    bundle = load_bundle(cfg.showo)
    if bundle.vq_model is None:
        raise ValueError(f"build_parm_data: the Show-o bundle {cfg.showo} has no MAGVIT-v2 (vq/): the judge data "
                         "are images")
    out = open_run(cfg, inputs={"showo": cfg.showo}).path
    start = time.perf_counter()
    counts = build_judge_steps(bundle.pipeline(MaskGITScheduler()), lines, labeller, out, per_line=cfg.per_line,
                               steps_per_path=cfg.steps_per_path, seed=cfg.seed, guidance_scale=cfg.guidance_scale,
                               num_steps=cfg.num_inference_steps, batch_size=cfg.batch_size,
                               clear_from=cfg.clear_from, extras=True, balance=cfg.balance,
                               potential_label=cfg.potential_label, rollouts=cfg.rollouts)
    atomic_write_text(out / "summary.json", json.dumps({"counts": counts, "lines": len(lines)}, indent=1) + "\n")
    print(json.dumps({k: v for k, v in counts.items() if k != "by_tag"}))
    print(f"PARM data -> {out} in {time.perf_counter() - start:.0f} s")
    return out


if __name__ == "__main__":
    hydra.main(config_path="../configs", config_name="build_parm_data", version_base="1.3")(run)()
