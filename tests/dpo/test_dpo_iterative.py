"""scripts/iterative_dpo.py: two rounds of generate -> judge -> pairs -> train on a tiny Show-o, killed and resumed."""
import json

import pytest
import torch
import yaml
from safetensors.torch import load_file

from common.rundir import RunDir, RunMismatch
from dpo.data import load_pairs
from dpo.iterative import RoundDir, read_prompts
from search.pool import entry_path, load_entry
from showo.factory import build_tiny_showo, load_bundle
from tests.helpers import TINY_VQ, compose_entry, load_recipe

PROMPTS = ["a red circle", "a blue square", "two green triangle"]


ITERATIVE = load_recipe("iterative_dpo")


def _cfg(tmp_path, *overrides):
    return compose_entry("train_dpo", [
        "model=showo_bundle", f"model.bundle.directory={tmp_path / 'bundle'}", "model.sampling.num_inference_steps=3",
        f"run_dir={tmp_path / 'run'}", f"iterative.prompts={tmp_path / 'prompts.txt'}", "iterative.rounds=2",
        "iterative.candidates_per_prompt=4", "iterative.generation_batch_size=5",
        "+iterative.judge={_target_: dpo.toy.MeanChannelJudge, channel: 0}",
        "dpo/pairing@iterative.pairing=best_worst",
        "train.mixed_precision=no", "train.global_batch_size=3", "train.epochs=2",
        "train.optimizer.lr=1e-3", "iterative.reference=initial", *overrides])


def test_two_rounds_killed_at_each_stage_and_resumed(tmp_path):
    build_tiny_showo(sorted({w for p in PROMPTS for w in p.split()}), vq=TINY_VQ).save_pretrained(tmp_path / "bundle")
    (tmp_path / "prompts.txt").write_text("\n".join(PROMPTS) + "\n\n")
    assert read_prompts(tmp_path / "prompts.txt") == PROMPTS
    run = tmp_path / "run"
    r0, r1 = RoundDir(run / "round_0"), RoundDir(run / "round_1")

    assert ITERATIVE.run(_cfg(tmp_path, "iterative.stop_after=0:generate")) == run
    stages = RunDir(run)
    assert stages.done("round_0/generate") and not stages.done("round_0/judge")
    pool_file = entry_path(r0.pool, 1, 0)
    entry = load_entry(pool_file)  # the project's one candidate-pool format
    assert entry.tokens.shape == (4, 16) and entry.outcome_scores is None and len(set(entry.seeds)) == 4
    pool_mtime = pool_file.stat().st_mtime_ns

    # the same run with another candidate count is refused, naming the key
    with pytest.raises(RunMismatch, match="iterative.candidates_per_prompt"):
        ITERATIVE.run(_cfg(tmp_path, "iterative.candidates_per_prompt=5"))

    ITERATIVE.run(_cfg(tmp_path, "iterative.stop_after=0:pairs"))
    assert pool_file.stat().st_mtime_ns > pool_mtime  # judged in place (generation itself was not redone)
    entry = load_entry(pool_file)
    assert len(entry.outcome_scores) == 4 and len(entry.extras["answer_yes"]) == 4
    pairs = load_pairs(r0.pairs, load_bundle(tmp_path / "bundle").layout)
    assert len(pairs) >= 1 and not stages.done("round_0/train")
    for p in pairs:  # best vs worst of the judged pool
        s = load_entry(entry_path(r0.pool, PROMPTS.index(p.prompt), 0)).outcome_scores
        assert p.chosen_score == pytest.approx(max(s)) and p.rejected_score == pytest.approx(min(s))

    final = ITERATIVE.run(_cfg(tmp_path))
    assert final == r1.final and (r1.final / "showo" / "pytorch_model.safetensors").is_file()
    round1 = yaml.safe_load((r1.root / "train_config.yaml").read_text())
    assert round1["model"]["bundle"]["directory"] == str(r0.final.resolve())
    assert round1["dpo"]["reference"]["source"]["directory"] == str(tmp_path / "bundle")
    # round 1 generated with round 0's policy, which differs from the initial weights
    w0 = load_file(str(r0.final / "showo" / "pytorch_model.safetensors"))
    init = load_file(str(tmp_path / "bundle" / "showo" / "pytorch_model.safetensors"))
    assert any(not torch.equal(w0[k], init[k]) for k in w0)
    summary = json.loads((run / "rounds.json").read_text())
    assert [s["round"] for s in summary] == [0, 1] and all(s["pairs"] >= 1 for s in summary)
    metrics = (r1.train / "metrics.jsonl").read_text().splitlines()
    assert len(metrics) == 2  # 3 prompts -> <= 3 pairs, batch 3, 2 epochs


def test_missing_judge_is_a_clear_error(tmp_path):
    cfg = compose_entry("train_dpo", ["model=showo_tiny", f"run_dir={tmp_path}", "iterative.prompts=x.txt"])
    with pytest.raises(ValueError, match="reward@iterative.judge"):
        ITERATIVE.run(cfg)
