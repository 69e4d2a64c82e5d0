"""The GenEval recipe: its config composes, and a run writes results, summary, tables and plot into its run dir."""
from __future__ import annotations

import json

import numpy as np
import pytest
from hydra.errors import MissingConfigException
from PIL import Image

from eval.geneval.layout import write_prompt_folder
from eval.geneval.prompts import parse_metadata
from eval.geneval.types import ClassDetections, ImageDetections
from tests.helpers import compose_entry, load_recipe

CLASSES = ["cat", "dog"]
META = [
    {"tag": "single_object", "include": [{"class": "cat", "count": 1}], "prompt": "a photo of a cat"},
    {"tag": "two_object", "include": [{"class": "cat", "count": 1}, {"class": "dog", "count": 1}],
     "prompt": "a photo of a cat and a dog"},
]


class CatOnlyDetector:
    """Sees one cat (score 0.8) in every image, never a dog."""

    class_names = CLASSES

    def detect(self, images):
        out = []
        for im in images:
            w, h = im.size
            cat = ClassDetections(np.array([[0, 0, w, h, 0.8]], np.float32), np.ones((1, h, w), bool))
            out.append(ImageDetections((w, h), {0: cat}))
        return out


def compose_cfg(overrides):
    return compose_entry("eval_geneval", overrides)


def test_config_composes_with_official_defaults():
    cfg = compose_cfg(["image_dir=/x"])
    assert cfg.detector._target_ == "eval.geneval.detectors.Mask2FormerDetector"
    assert cfg.eval.color_classifier._target_ == "eval.geneval.colors.ClipColorClassifier.from_pretrained"
    assert cfg.eval.color_classifier.model_name == "ViT-L-14-quickgelu"
    assert cfg.eval.metadata.endswith("geneval/evaluation_metadata.jsonl")  # resolves with or without IMAGECOT_CACHE
    assert cfg.eval.images_per_prompt == 4 and dict(cfg.eval.options) == {}
    with pytest.raises(MissingConfigException):
        compose_cfg(["image_dir=/x", "eval=genevall"])


def test_recipe_writes_one_run_dir(tmp_path, monkeypatch):
    metadata = tmp_path / "meta.jsonl"
    metadata.write_text("".join(json.dumps(m) + "\n" for m in META))
    images = tmp_path / "images"
    for index, raw in enumerate(META):
        write_prompt_folder(images, parse_metadata(raw, CLASSES, index), [Image.new("RGB", (6, 4))] * 4)
    run_dir = tmp_path / "run"
    cfg = compose_cfg([f"image_dir={images}", f"eval.metadata={metadata}", "name=tiny", "seeds=[0,1,2,3]",
                       "eval.color_classifier.checkpoint=unused", "detector.checkpoint=unused", f"run_dir={run_dir}"])
    script = load_recipe("eval_geneval")
    monkeypatch.setattr(script, "instantiate", lambda node: CatOnlyDetector() if "detector" in node._target_ else None)
    record = script.run(cfg)
    assert record["scores"]["overall"] == pytest.approx(0.5)  # single_object 1.0, two_object 0.0
    assert record["seeds"] == [0, 1, 2, 3] and record["config"]["image_dir"] == str(images)
    assert len((run_dir / "results.jsonl").read_text().splitlines()) == 8
    assert json.loads((run_dir / "summary.json").read_text())["name"] == "tiny"
    assert "| tiny | 1.000 | 0.000 |" in (run_dir / "summary.md").read_text()
    assert (run_dir / "summary.tex").exists() and (run_dir / "geneval_tasks.png").exists()
    assert "detector:" in (run_dir / "config.yaml").read_text() and (run_dir / "run.json").is_file()
