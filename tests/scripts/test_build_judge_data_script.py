"""scripts/build_judge_data.py end to end on a few training lines of shapes32 with the committed tiny Show-o: balanced
ORM data, roll-out labelled steps, valid files, and **no eval-split prompt anywhere in the judge data**."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter

import pytest
from omegaconf import OmegaConf

from eval.shapes.data import build_suite
from reward_models.data import read_examples
from reward_models.judge_data import TASK_FILES
from showo.self_correction import SelfCorrectionDataset
from tests.helpers import REPO_ROOT

SHOWO = REPO_ROOT / "checkpoints" / "shapes" / "showo"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    if not (SHOWO / "vq").is_dir():
        pytest.skip(f"committed tiny Show-o missing: {SHOWO}")
    out = tmp_path_factory.mktemp("judge_data")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    args = [f"run_dir={out}", "if_exists=overwrite", f"showo={SHOWO}", "lines_per_tag=1", "builder.num_inference_steps=3",
            "builder.paths_per_line=2", "builder.paths_per_tag=0", "builder.rollout_steps=[0]", "builder.rollouts=2",
            "builder.examples_per_line=6", "builder.examples_per_tag=0", "builder.batch_size=4"]
    proc = subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "build_judge_data.py"),
                           "+experiment=shapes/judge_data", *args], cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def test_no_eval_split_prompt_is_in_the_judge_data(data):
    held_out = {line["prompt"] for line in build_suite("shapes32").eval}
    lines = [json.loads(line) for line in (data / "lines.jsonl").read_text().splitlines()]
    assert len({line["tag"] for line in lines}) == 6 and not {line["prompt"] for line in lines} & held_out
    texts = [turn["content"] for task in TASK_FILES for ex in read_examples(data / f"{task}.jsonl")
             for turn in ex.conversation]
    assert texts and not [p for p in held_out if any(p + "." in t or p + "'" in t for t in texts)]
    groups = SelfCorrectionDataset(data / "self_correction").groups
    assert not {g["prompt"] for g in groups} & held_out


def test_every_line_has_as_many_yes_as_no_orm_examples(data):
    lines = [json.loads(line)["prompt"] for line in (data / "lines.jsonl").read_text().splitlines()]
    answers = Counter((int(ex.id[:5]), ex.conversation[1]["content"]) for ex in read_examples(data / "orm.jsonl"))
    for i, prompt in enumerate(lines):
        assert answers[i, "yes"] == answers[i, "no"] == 3, prompt  # examples_per_line 6: 3 + 3
    for ex in read_examples(data / "orm.jsonl"):  # the prompt of the example is its line's
        assert f"prompt: {lines[int(ex.id[:5])]}." in ex.conversation[0]["content"]


def test_steps_are_labelled_by_rollouts_and_files_are_consistent(data):
    summary = json.loads((data / "summary.json").read_text())
    prm = read_examples(data / "prm.jsonl")  # check_images: every image exists
    rolled = [ex for ex in prm if ex.id.endswith("_s00")]  # step images ("_s00_r<j>": roll-out finals)
    assert len(rolled) == 2 * 6  # the first 2 paths of the 6 lines, step 0
    assert summary["counts"]["prm"]["examples"] == len(prm)
    assert summary["config"]["rollouts"] == 2
    assert OmegaConf.load(data / "config.yaml").builder.rollout_steps == [0]
    for task in TASK_FILES:
        assert read_examples(data / f"{task}.jsonl"), task
