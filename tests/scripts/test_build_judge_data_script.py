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

from PIL import Image

from eval.shapes.data import build_suite
from eval.shapes.oracle import ShapesLabeller
from eval.shapes.perturb import ShapesDescriber
from eval.shapes.suite import training_lines
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
    args = [f"run_dir={out}", "if_exists=overwrite", f"showo={SHOWO}", "lines_per_tag=1",
            "builder.num_inference_steps=4",
            "builder.paths_per_line=2", "builder.paths_per_tag=0", "builder.rollout_steps=[0]", "builder.rollouts=2",
            "builder.examples_per_line=6", "builder.examples_per_tag=0", "builder.batch_size=4",
            "builder.finals_per_line=2", "builder.finals_batch_size=3", "builder.steps_per_line=3",
            "builder.steps_per_path=1"]
    proc = subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "build_judge_data.py"),
                           "+experiment=shapes/judge_data", *args], cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def test_no_eval_split_prompt_is_in_the_judge_data(data):
    held_out = {line["prompt"] for line in build_suite("shapes32").eval}
    lines = [json.loads(line) for line in (data / "lines.jsonl").read_text().splitlines()]
    assert len({line["tag"] for line in lines}) == 6 and not {line["prompt"] for line in lines} & held_out
    texts = [turn["content"] for task in (*TASK_FILES, "finals", "finals_describe", "potential_steps")
             for ex in read_examples(data / f"{task}.jsonl") for turn in ex.conversation]
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


def test_own_finals_are_labelled_and_described_by_the_exact_judge(data):
    """finals.jsonl: finals_per_line own images per line (seeded apart from the paths), each labelled by the exact
    judge and described by the exact detector (finals_describe.jsonl)."""
    suite = build_suite("shapes32")
    lines = training_lines(suite, "space", per_tag=1)
    assert [json.loads(line)["prompt"] for line in (data / "lines.jsonl").read_text().splitlines()] == \
        [line["prompt"] for line in lines]
    finals, described = read_examples(data / "finals.jsonl"), read_examples(data / "finals_describe.jsonl")
    assert [ex.id for ex in finals] == [f"{i:05d}_f{k:03d}" for i in range(len(lines)) for k in range(2)]
    assert [ex.image for ex in described] == [ex.image for ex in finals]
    label, describe = ShapesLabeller(suite.config.world), ShapesDescriber(suite.config.world)
    own_paths = {ex.image for ex in read_examples(data / "orm.jsonl")}
    for ex, desc in zip(finals, described):
        assert ex.image not in own_paths
        with Image.open(data / ex.image) as im:
            image = im.convert("RGB")
        line = lines[int(ex.id[:5])]
        assert f"prompt: {line['prompt']}." in ex.conversation[0]["content"]
        assert ex.conversation[1]["content"] == ("yes" if label(line, image).correct else "no"), ex.id
        assert desc.conversation[1]["content"] == describe(image), ex.id
    summary = json.loads((data / "summary.json").read_text())
    assert summary["counts"]["finals"]["examples"] == len(finals)


def test_potential_steps_carry_their_paths_final_verdict_balanced_per_line(data):
    """potential_steps.jsonl (reward_models/judge_steps.py): clear step images of own paths, each answered with its
    path's final verdict, as many "yes" as "no" per line; the prompt is its line's."""
    lines = [json.loads(line)["prompt"] for line in (data / "lines.jsonl").read_text().splitlines()]
    examples = read_examples(data / "potential_steps.jsonl")  # check_images: every image exists
    assert examples  # the counting line has an accepted and a rejected path (seeded; 1 + 1 examples)
    answers = Counter((int(ex.id[:5]), ex.conversation[-1]["content"]) for ex in examples)
    for i in range(len(lines)):
        assert answers[i, "yes"] == answers[i, "no"], lines[i]
    for ex in examples:
        assert ex.id[5:7] == "_t" and ex.id.endswith("_s02")  # 4 steps: the one clear step before the last
        assert f"'{lines[int(ex.id[:5])]}.'" in ex.conversation[0]["content"]
    summary = json.loads((data / "summary.json").read_text())["counts"]["potential_steps"]
    assert summary["paths"] == 3 * len(lines) and summary["examples"] == len(examples)
