"""Recipe: judge training data that forces the judge to look at the image (issue 13; imagegen_cot.md §4.2, §5, §6.4,
§7): the Show-o's own paths with roll-out labels, rendered ground truth and rendered near misses, balanced per prompt.

    python scripts/build_judge_data.py +experiment=shapes/judge_data run_dir=runs/shapes/judge_data

Wiring only: the lines are the suite's *training* lines (``eval.shapes.suite.training_lines``: the whole prompt space
minus the eval split, or the train split), the labeller, the scene source and the describer are ``_target_``
components (``eval.shapes.oracle.ShapesLabeller`` / ``SceneRenderer`` / ``ShapesDescriber``), and ``reward_models.judge_data.build_judge_data`` does
the work. The output folder is what ``scripts/train_judge.py``'s shapes experiments read (``SHAPES_JUDGE_DATA``).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig

from common.recipe import check, open_run
from common.validate import Choice, Dir, Int
from eval.shapes.suite import build_shapes_suite, training_lines
from reward_models.judge_data import build_judge_data
from showo.factory import load_bundle

SETTINGS = (Dir("showo"), Choice("source", ("space", "split")), Int("lines_per_tag", min=1, optional=True))


def run(cfg: DictConfig) -> Path:
    check(cfg, "build_judge_data", SETTINGS)
    lines = training_lines(build_shapes_suite(instantiate(cfg.data)), cfg.source, cfg.lines_per_tag)
    labeller, scenes, builder = instantiate(cfg.labeller), instantiate(cfg.scenes), instantiate(cfg.builder)
    describer = None if cfg.describer is None else instantiate(cfg.describer)
    bundle = load_bundle(cfg.showo)
    out = open_run(cfg, inputs={"showo": cfg.showo}).path
    start = time.perf_counter()
    counts = build_judge_data(bundle, lines, labeller, scenes, out, builder, describer)
    for task, c in counts.items():
        print(f"{task:16s} {json.dumps(c)}")
    print(f"judge data -> {out} in {time.perf_counter() - start:.0f} s")
    return out


if __name__ == "__main__":
    hydra.main(config_path="../configs", config_name="build_judge_data", version_base="1.3")(run)()
