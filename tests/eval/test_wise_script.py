"""The WISE recipe end to end with a tiny random local VLM judge: 2 prompts per category (real WISE prompts) with
synthetic images, summary.json and tables, and a run killed by its hard-exit hook then restarted giving the same
results."""
from __future__ import annotations

import json

import numpy as np
import pytest
from hydra.errors import MissingConfigException
from PIL import Image

from eval.wise.prompts import CATEGORIES, load_prompts, write_image
from reward_models.tiny import build_tiny_llava_onevision
from tests.helpers import Killed, compose_entry, load_recipe, raise_on_hard_exit, require_shared


def compose_cfg(overrides):
    return compose_entry("eval_wise", overrides)


def test_config_composes_with_the_local_judge_by_default():
    cfg = compose_cfg(["image_dir=/x"])
    assert cfg.wise_judge.judge._target_ == "eval.wise.judges.LocalVLMJudge.from_pretrained"
    assert cfg.wise_judge.unparsable == "zero" and cfg.wise_judge.attempts == 1
    official = compose_cfg(["image_dir=/x", "wise_judge=openai"])
    assert official.wise_judge.judge.model == "gpt-4o-2024-05-13" and official.wise_judge.unparsable == "skip"
    with pytest.raises(MissingConfigException):
        compose_cfg(["image_dir=/x", "wise_judge=gpt4"])


def test_run_writes_summary_and_resumes_after_a_kill(tmp_path, monkeypatch):
    wise_dir = require_shared("wise")
    prompts = load_prompts(wise_dir)
    chosen = [p for c in CATEGORIES for p in [q for q in prompts if q.category == c][:2]]
    rng = np.random.default_rng(0)
    for p in chosen:
        write_image(tmp_path / "images", p.prompt_id, Image.fromarray(rng.integers(0, 256, (24, 24, 3), np.uint8)))
    vlm = build_tiny_llava_onevision(tmp_path / "vlm")
    base = [f"image_dir={tmp_path / 'images'}", f"prompt_dir={wise_dir}",
            f"prompt_ids=[{','.join(str(p.prompt_id) for p in chosen)}]", f"wise_judge.judge.path={vlm}",
            "wise_judge.judge.device=cpu", "wise_judge.judge.dtype=float32", "wise_judge.judge.max_new_tokens=6",
            "batch_size=5", "name=tiny", "seeds=[0]"]
    script = load_recipe("eval_wise")
    ref = script.run(compose_cfg(base + [f"run_dir={tmp_path / 'ref'}"]))
    scores = ref["scores"]
    assert all(scores["categories"][c]["images"] == 2 and scores["categories"][c]["missing"] == 0
               for c in CATEGORIES)
    records = [json.loads(line) for line in (tmp_path / "ref" / "results.jsonl").read_text().splitlines()]
    assert sorted(r["prompt_id"] for r in records) == sorted(p.prompt_id for p in chosen)
    # A random judge does not answer in the rubric's format: policy "zero" scores and counts it.
    assert scores["unparsed"] == sum(not r["parsed"] for r in records)
    assert scores["overall"] is not None
    summary = json.loads((tmp_path / "ref" / "summary.json").read_text())
    assert summary["schema"] == "imagecot.wise.summary" and summary["config"]["wise_judge"]["unparsable"] == "zero"
    assert "| T2I-R1 (paper) |" in (tmp_path / "ref" / "summary.md").read_text()
    assert (tmp_path / "ref" / "wise_categories.png").is_file()

    raise_on_hard_exit(monkeypatch)
    with pytest.raises(Killed):
        script.run(compose_cfg(base + ["debug_exit_after_batches=1"] + [f"run_dir={tmp_path / 'resumed'}"]))
    assert len((tmp_path / "resumed" / "results.part000.jsonl").read_text().splitlines()) == 5
    script.run(compose_cfg(base + [f"run_dir={tmp_path / 'resumed'}"]))
    assert (tmp_path / "resumed" / "results.jsonl").read_bytes() == (tmp_path / "ref" / "results.jsonl").read_bytes()
