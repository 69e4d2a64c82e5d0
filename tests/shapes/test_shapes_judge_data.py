"""Judge data of the shapes world: PARM++'s self-correction groups (rejected path -> explanation -> good image)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from eval.geneval.judge import Verdict
from eval.shapes.data import build_suite, to_pixels
from eval.shapes.judge_data import SELF_CORRECTION_DIR, build_judge_data, write_self_correction_groups
from eval.shapes.render import render_scene, scene_seed
from search.self_correction import SelfCorrectionDataset
from showo.data import tokenize_images
from showo.factory import load_bundle
from tests.helpers import assert_same_image

REPO = Path(__file__).resolve().parents[2]
SHOWO = REPO / "checkpoints" / "shapes" / "showo"


@pytest.fixture(scope="module")
def bundle():
    if not (SHOWO / "showo" / "config.json").is_file():
        pytest.skip(f"committed tiny Show-o missing: {SHOWO}")
    return load_bundle(SHOWO)


def _verdict(correct: bool, reason: str = "") -> Verdict:
    return Verdict(correct=correct, reason=reason, details={})


def test_groups_pair_each_rejected_path_with_an_own_success_or_a_rendered_scene(bundle, tmp_path):
    suite = build_suite("shapes32")
    lines, world, n = suite.train[:2], suite.config.world, bundle.layout.num_image_tokens
    jobs = [(i, k) for i in range(2) for k in range(3)]
    tokens = {job: torch.full((n,), 10 * job[0] + job[1]) for job in jobs}
    # line 0: path 1 accepted, paths 0 and 2 rejected; line 1: nothing accepted
    verdicts = {job: _verdict(job == (0, 1), "" if job == (0, 1) else f"expected square>=1, found {job[1]}\nmore")
                for job in jobs}
    counts = write_self_correction_groups(bundle, lines, world, tmp_path, jobs, tokens, verdicts, seed=7)
    assert counts == {"examples": 5, "yes": 2}
    data = SelfCorrectionDataset(tmp_path)
    assert [g["prompt"] for g in data.groups] == [lines[0]["prompt"]] * 2 + [lines[1]["prompt"]] * 3
    assert data.groups[0]["feedback"] == "expected square>=1, found 0; more"  # the reflection explanation
    assert torch.equal(data.bad, torch.stack([tokens[j] for j in jobs if j != (0, 1)]))
    assert torch.equal(data.good[:2], torch.stack([tokens[0, 1]] * 2))  # the Show-o's own accepted image
    scenes = to_pixels([render_scene(lines[1], scene_seed(7, 1, k), world)[0] for k in range(3)])
    with torch.no_grad():
        assert torch.equal(data.good[2:], tokenize_images(bundle.vq_model, scenes))  # rendered teacher scenes
    data.check(bundle.layout)


def test_judge_data_writes_a_group_for_every_rejected_image(bundle, tmp_path):
    suite = build_suite("shapes32")
    counts = build_judge_data(bundle, suite.train[:2], suite.config.world, tmp_path, images_per_prompt=2,
                              num_inference_steps=2, batch_size=4)
    orm = [json.loads(line) for line in (tmp_path / "orm.jsonl").read_text().splitlines()]
    reflection = [json.loads(line) for line in (tmp_path / "reflection.jsonl").read_text().splitlines()]
    rejected = [ex for ex in reflection if ex["conversation"][1]["content"] == "no"]
    assert counts[SELF_CORRECTION_DIR]["examples"] == len(rejected) == sum(ex["conversation"][-1]["content"] == "no"
                                                                            for ex in orm)
    data = SelfCorrectionDataset(tmp_path / SELF_CORRECTION_DIR)
    assert [g["feedback"] for g in data.groups] == [ex["conversation"][-1]["content"] for ex in rejected]
    assert rejected  # 2 decoding steps: the tiny Show-o's images are rejected
    # the bad codes are the rejected images themselves: decoding them gives the saved PNGs
    for image, ex in zip(bundle.pipeline().decode(data.bad, "pil"), rejected):
        assert_same_image(image, Image.open(tmp_path / ex["image"]).convert("RGB"), ex["image"])
