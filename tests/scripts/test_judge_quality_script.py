"""scripts/judge_quality.py end to end on a reduced shapes run: committed tiny Show-o (2 steps) and judges; the step
set is the baseline's own paths (same seeds, same final images), cached; the tables and JSON hold every judge."""
from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from showo.factory import load_bundle
from tests.helpers import REPO_ROOT, assert_same_image, run_script, shapes_eval_run

CKPT = REPO_ROOT / "checkpoints" / "shapes"


@pytest.fixture(scope="module")
def quality(tmp_path_factory):
    run = shapes_eval_run(tmp_path_factory, "showo/vq", "orm", "parm")
    run_script("generate.py", "+experiment=shapes/generate", f"prompts={run}/prompts/evaluation_metadata.jsonl",
               f"class_names={run}/prompts/object_names.txt", f"run_dir={run}/rows/baseline", "images_per_prompt=2",
               "model.sampling.num_inference_steps=2", f"model.bundle.directory={CKPT / 'showo'}")
    args = [f"run={run}", f"showo={CKPT / 'showo'}", "images_per_prompt=2", "sampling.num_inference_steps=2",
            "steps.paths_per_prompt=1", "steps.rollout_steps=[0]", "steps.rollouts=2", "~judges.prm", "~judges.parmpp",
            f"judges.orm.model_dir={CKPT / 'orm'}", f"judges.parm.model_dir={CKPT / 'parm'}"]
    stdout = run_script("judge_quality.py", *args)
    return run, args, stdout


def test_tables_hold_every_judge_and_metrics_are_probabilities(quality):
    run, _, stdout = quality
    rows = json.loads((run / "judge_quality" / "judge_quality.json").read_text())
    assert [r["judge"] for r in rows] == ["orm", "parm"]
    assert "| orm |" in stdout and "| parm |" in (run / "judge_quality" / "judge_quality.md").read_text()
    for row in rows:
        final = row["final"]
        assert final["examples"] == 12 and final["positives"] == sum(
            json.loads(line)["correct"] for line in (run / "rows/baseline/eval/results.jsonl").read_text().splitlines())
        for value in (final["auc"], final["ece"], final["accuracy"], row["steps"]["accuracy"]):
            assert value is None or 0.0 <= value <= 1.0
        tasks = [v for v in final["by_tag"].values() if v is not None]
        assert final["within_auc_task_mean"] == (pytest.approx(sum(tasks) / len(tasks)) if tasks else None)
        ci = final["within_auc_ci"]
        assert (ci is None) == (final["within_auc"] is None)
        assert ci is None or ci[0] <= final["within_auc"] <= ci[1]
    parm = rows[1]
    assert parm["step_question"] == "potential" and 0.0 <= parm["clarity"]["accuracy"] <= 1.0
    assert parm["clarity"]["examples"] == 6  # 2 steps: the rule (1, 1) labels step 2 "clear", step 1 not at all


def test_step_set_is_the_baseline_and_is_reused(quality):
    run, args, _ = quality
    cache = run / "judge_quality" / "steps.pt"
    stamp = cache.stat().st_mtime_ns
    run_script("judge_quality.py", *args)
    assert cache.stat().st_mtime_ns == stamp  # cached, not sampled again
    stored = torch.load(cache, weights_only=True)
    assert len(stored["paths"]) == 6 and all(sorted(p["rollouts"]) == [0] for p in stored["paths"])
    decoded = load_bundle(CKPT / "showo").pipeline().decode(torch.stack([p["final"] for p in stored["paths"]]))
    for p, image in zip(stored["paths"], decoded):
        saved = Image.open(run / "rows/baseline/images" / f"{p['line']:05d}" / "samples" / f"{p['index']:04d}.png")
        assert_same_image(image, saved.convert("RGB"), f"path {p['line']}/{p['index']}")  # the baseline's own image
