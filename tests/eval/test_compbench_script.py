"""The T2I-CompBench recipe end to end on tiny random models: 2 prompts per category (the real first two of each
validation file) × 2 synthetic images, the official layout, summary.json, official vqa_result.json files, and a
run killed by its hard-exit hook then restarted giving the same results."""
from __future__ import annotations

import json

import numpy as np
import pytest
from hydra.errors import MissingConfigException
from PIL import Image

from eval.t2i_compbench.layout import write_image
from eval.t2i_compbench.prompts import CATEGORIES, load_prompts
from tests.eval.tiny_models import TINY_CLIP_ARCH, build_tiny_blip, build_tiny_clip, build_tiny_owl
from tests.helpers import Killed, compose_entry, load_recipe, raise_on_hard_exit, require_shared

ALL = list(CATEGORIES)


def compose_cfg(overrides):
    return compose_entry("eval_compbench", overrides)


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    """Prompt files (2 per category), the image folder and the tiny models; returns Hydra overrides."""
    shared = require_shared("t2i_compbench")
    root = tmp_path_factory.mktemp("compbench")
    prompts = root / "prompts"
    prompts.mkdir()
    rng = np.random.default_rng(0)
    for name, cat in CATEGORIES.items():
        two = load_prompts(shared, name)[:2]
        (prompts / cat.file).write_text("\r\n".join(two))
        for k, prompt in enumerate(two):
            for j in range(2):
                image = Image.fromarray(rng.integers(0, 256, (40 + 8 * j, 48, 3), dtype=np.uint8))
                write_image(root / "images", name, prompt, 2 * k + j, image)
    complex_two = load_prompts(shared, "complex")[:2]
    (prompts / "complex_val_spatial.txt").write_text(complex_two[0] + "\n")
    (prompts / "complex_val_action.txt").write_text("")
    _, clip_weights = build_tiny_clip(root / "clip")
    return [
        f"image_dir={root / 'images'}", f"compbench.prompt_dir={prompts}", "compbench.images_per_prompt=2",
        "compbench.batch_size=3", f"categories=[{','.join(ALL)}]", "seeds=[42,43]",
        f"compbench.vqa.path={build_tiny_blip(root / 'blip')}", "compbench.vqa.image_size=48",
        "compbench.vqa.device=cpu", f"compbench.detector.path={build_tiny_owl(root / 'owl')}",
        "compbench.detector.threshold=0.0", "compbench.detector.device=cpu", f"compbench.clip.arch={TINY_CLIP_ARCH}",
        f"compbench.clip.weights={clip_weights}", "compbench.clip.device=cpu",
    ]


def test_config_composes_with_official_defaults():
    cfg = compose_cfg(["image_dir=/x"])
    assert list(cfg.categories) == ["color", "shape", "texture", "spatial", "non_spatial", "complex"]
    assert cfg.compbench.vqa.image_size == 480 and cfg.compbench.images_per_prompt == 10
    assert cfg.compbench.clip.arch == "ViT-B-32-quickgelu" and cfg.compbench.clip.scale == 1.0
    assert not cfg.compbench.clip.clip_at_zero
    assert cfg.compbench.parser._target_ == "eval.t2i_compbench.parsing.RuleParser"
    with pytest.raises(MissingConfigException):
        compose_cfg(["image_dir=/x", "compbench=defualt"])


def test_run_writes_official_layout_and_resumes_after_a_kill(bench, tmp_path, monkeypatch):
    script = load_recipe("eval_compbench")
    ref = script.run(compose_cfg(bench + ["name=tiny"] + [f"run_dir={tmp_path / 'ref'}"]))
    scores = ref["scores"]
    assert set(scores["categories"]) == set(ALL)
    assert all(v["images"] == 4 and v["missing"] == 0 for v in scores["categories"].values())
    means = [scores["categories"][c]["score"] for c in ["color", "shape", "texture", "spatial", "non_spatial",
                                                        "complex"]]
    assert scores["mean_v1"] == pytest.approx(sum(means) / 6)
    assert ref["seeds"] == [42, 43] and ref["environment"]["packages"]["transformers"]
    records = [json.loads(line) for line in (tmp_path / "ref" / "results.jsonl").read_text().splitlines()]
    assert len(records) == 28
    by_cat = {c: [r for r in records if r["category"] == c] for c in ALL}
    assert all(0 < r["score"] <= 1 for r in by_cat["color"])  # BLIP products of probabilities
    assert {r["details"]["kind"] for r in by_cat["complex"]} == {"spatial", "spatial_action"}
    blip = json.loads((tmp_path / "ref" / "color" / "annotation_blip" / "vqa_result.json").read_text())
    assert [b["question_id"] for b in blip] == [0, 1, 2, 3] and all(isinstance(b["answer"], str) for b in blip)
    assert (tmp_path / "ref" / "complex" / "annotation_3_in_1" / "vqa_result.json").is_file()
    assert (tmp_path / "ref" / "numeracy" / "annotation_num" / "vqa_result.json").is_file()
    summary = json.loads((tmp_path / "ref" / "summary.json").read_text())
    assert summary["schema"] == "imagecot.t2i_compbench.summary" and summary["name"] == "tiny"
    assert "| T2I-R1 (paper) | 0.8130 |" in (tmp_path / "ref" / "summary.md").read_text()
    assert (tmp_path / "ref" / "compbench_categories.png").is_file()

    raise_on_hard_exit(monkeypatch)
    with pytest.raises(Killed):
        script.run(compose_cfg(bench + ["name=tiny", "debug_exit_after_batches=2"] + [f"run_dir={tmp_path / 'resumed'}"]))
    part = (tmp_path / "resumed" / "results.part000.jsonl").read_text().splitlines()
    assert len(part) == 6 and not (tmp_path / "resumed" / "results.jsonl").exists()
    script.run(compose_cfg(bench + ["name=tiny"] + [f"run_dir={tmp_path / 'resumed'}"]))
    assert (tmp_path / "resumed" / "results.jsonl").read_bytes() == (tmp_path / "ref" / "results.jsonl").read_bytes()
