"""scripts/train_grpo.py on tiny random generators (CPU): outputs and metrics, kill + resume, reused rollouts,
Show-o, and 1 vs 2 processes."""
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from common.validate import ConfigError
from janus.checkpoint import load_janus
from janus.tiny import build_tiny_janus, write_hf_layout
from showo.factory import build_tiny_showo
from tests.helpers import TINY_VQ, compose_entry, load_recipe, read_metrics

REPO = Path(__file__).resolve().parents[2]
PROMPTS = ["a red cat", "two blue dogs", "a green cup on the bench", "a small dog"]
WORDS = sorted({w for p in PROMPTS for w in p.split()})
SGD = ["~train.optimizer", "+train.optimizer={_target_: torch.optim.SGD, _partial_: true, lr: 0.05}"]


RECIPE = load_recipe("train_grpo")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("grpo_world")
    write_hf_layout(build_tiny_janus(WORDS, seed=0), root / "janus")
    (root / "prompts.txt").write_text("".join(p + "\n" for p in PROMPTS))
    return root


def _overrides(world, run_dir, *extra):
    return [f"model.bundle.directory={world / 'janus'}", f"data.prompts={world / 'prompts.txt'}", f"run_dir={run_dir}",
            "threads=1", "~reward", "+reward={_target_: dpo.toy.MeanChannelJudge}", "grpo.group_size=3",
            "grpo.prompts_per_step=2", "train.mixed_precision=no", "policy.cot.max_new_tokens=6",
            "policy.gradient_checkpointing=false", "train.optimizer.lr=1e-3", "log_samples_every=1", *extra]


def _cfg(world, run_dir, *extra):
    return compose_entry("train_grpo", _overrides(world, run_dir, *extra))


def _untimed(records):
    return [{k: v for k, v in r.items() if not k.startswith("time/")} for r in records]


def _weights(final):
    return load_file(str(Path(final) / "model.safetensors"))


def test_run_writes_metrics_final_weights_and_reward_curve(world, tmp_path):
    final = RECIPE.run(_cfg(world, tmp_path / "run", "train.max_steps=2"))
    metrics = read_metrics(tmp_path / "run")
    assert [m["step"] for m in metrics] == [1, 2]
    for key in ("loss", "kl", "kl/text", "kl/image", "cot_length", "advantage/zero_std_groups", "grad_norm", "lr",
                "rewards/reward/mean", "rewards/reward/std", "reward/group_std", "time/rollout", "time/update"):
        assert key in metrics[0], key
    # step 0: the policy is the reference, so the KL is 0 (up to float32 rounding of a gradient-enabled vs a no-grad
    # pass: k3 ~ d^2 / 2) and nothing is clipped; after one update it is not
    assert metrics[0]["kl"] < 1e-9 and metrics[0]["clip_fraction"] == 0.0
    assert metrics[1]["kl"] > 0.0
    assert 1 <= metrics[0]["cot_length"] <= 6
    init, trained = _weights(world / "janus"), _weights(final)
    changed = [k for k in init if not torch.equal(init[k], trained[k])]
    assert changed and all(k.startswith(("model.language_model.", "lm_head.")) for k in changed)
    assert any(k.startswith("lm_head.") for k in changed) and any("layers" in k for k in changed)
    load_janus(final)  # the export is a loadable checkpoint
    assert (tmp_path / "run" / "reward_curve.png").stat().st_size > 0
    samples = [json.loads(line) for line in (tmp_path / "run" / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 2 * 2 * 3 and {"cot", "reward", "advantage"} <= set(samples[0])
    batch = json.loads((tmp_path / "run" / "batch.json").read_text())
    assert batch["gradient_accumulation_steps"] == 2 and batch["processes"] == 1


def test_kill_and_resume_gives_identical_weights(world, tmp_path):
    common = ("train.max_steps=4", "train.checkpoint_every=2")
    full = RECIPE.run(_cfg(world, tmp_path / "full", *common))
    killed = tmp_path / "killed"
    assert RECIPE.run(_cfg(world, killed, *common, "train.stop_after_steps=3")) == killed  # checkpoint at 2, step 3 lost
    assert not (killed / "final").exists()
    resumed = RECIPE.run(_cfg(world, killed, *common))
    wf, wr = _weights(full), _weights(resumed)
    assert all(torch.equal(wf[k], wr[k]) for k in wf)
    assert _untimed(read_metrics(killed)) == _untimed(read_metrics(tmp_path / "full"))
    lines = (killed / "samples.jsonl").read_text().splitlines()
    assert lines == (tmp_path / "full" / "samples.jsonl").read_text().splitlines()


def test_a_reused_rollout_is_clipped_and_must_not_straddle_checkpoints(world, tmp_path):
    with pytest.raises(ConfigError, match="multiples of grpo.num_iterations"):
        RECIPE.run(_cfg(world, tmp_path / "bad", "grpo.num_iterations=2", "train.max_steps=3"))
    assert not (tmp_path / "bad").exists()
    RECIPE.run(_cfg(world, tmp_path / "reuse", "grpo.num_iterations=2", "train.max_steps=2", "grpo.loss.clip_eps=0.01",
                    "train.optimizer.lr=0.05"))
    first, second = read_metrics(tmp_path / "reuse")
    assert first["reward/mean"] == second["reward/mean"]  # the same rollout
    assert first["clip_fraction"] == 0.0 and second["clip_fraction"] > 0.0  # ratios moved off 1 after one step


def test_showo_policy_through_the_recipe(tmp_path):
    build_tiny_showo(WORDS, vq=TINY_VQ, seed=0).save_pretrained(tmp_path / "showo")
    (tmp_path / "prompts.txt").write_text("".join(p + "\n" for p in PROMPTS))
    cfg = compose_entry("train_grpo", [
        "model=showo_bundle", "policy=showo", f"model.bundle.directory={tmp_path / 'showo'}",
        "model.sampling.num_inference_steps=2", f"data.prompts={tmp_path / 'prompts.txt'}",
        f"run_dir={tmp_path / 'run'}", "threads=1", "~reward", "+reward={_target_: dpo.toy.MeanChannelJudge}",
        "grpo.group_size=3", "grpo.prompts_per_step=2", "train.mixed_precision=no", "train.max_steps=2",
        "train.optimizer.lr=1e-3"])
    final = RECIPE.run(cfg)
    before = load_file(str(tmp_path / "showo" / "showo" / "pytorch_model.safetensors"))
    after = load_file(str(final / "showo" / "pytorch_model.safetensors"))
    assert any(not torch.equal(before[k], after[k]) for k in before)
    first = read_metrics(tmp_path / "run")[0]
    assert first["kl"] < 1e-9 and first["cot_length"] == 0.0


@pytest.mark.slow
def test_two_processes_give_the_weights_of_one(world, tmp_path):
    """2 CPU processes x 1 prompt == 1 process x 2 prompts (accumulation 2): whole groups per rank, per-sample seeds
    from global positions, and DDP's average of the ranks' group means."""
    import os
    import subprocess
    import sys

    common = [*SGD, "train.max_steps=2"]
    one = RECIPE.run(_cfg(world, tmp_path / "one", *common))
    # torchrun: accelerate's launcher starts a single process for --cpu without an MPI setup
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(REPO / "scripts" / "train_grpo.py"), *_overrides(world, tmp_path / "two", *common)]
    done = subprocess.run(cmd, cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((tmp_path / "two" / "batch.json").read_text())["gradient_accumulation_steps"] == 1
    w1, w2 = _weights(one), _weights(tmp_path / "two" / "final")
    assert any(not torch.equal(w1[k], _weights(world / "janus")[k]) for k in w1)
    for k in w1:  # float32: a sum of two rank means (all-reduce) vs two halves accumulated in one process
        torch.testing.assert_close(w1[k], w2[k], atol=1e-6, rtol=1e-5)
    m1, m2 = read_metrics(tmp_path / "one"), read_metrics(tmp_path / "two")
    for a, b in zip(m1, m2):  # the same samples: rewards equal exactly, losses to float rounding
        assert a["reward/mean"] == b["reward/mean"] and a["cot_length"] == b["cot_length"]
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-6) and a["kl"] == pytest.approx(b["kl"], abs=1e-7)


@pytest.mark.parametrize("experiment, modalities, plans", [("grpo_janus", ["text", "image"], True),
                                                           ("grpo_janus_token", ["image"], False),
                                                           ("grpo_janus_semantic", ["text"], True)])
def test_the_shapes_janus_experiments_differ_only_in_what_they_train(experiment, modalities, plans):
    """BiCoT, token-only and semantic-only GRPO on the tiny Janus: the same model, reward, prompts and budget; the plan
    is the one the tiny Janus was trained to write (its CoT rows' block), or none for token-only GRPO."""
    from omegaconf import OmegaConf

    cfg = compose_entry("train_grpo", [f"+experiment=shapes/{experiment}"])
    cot_rows = compose_entry("run_search", ["+experiment=shapes/janus_cot", "prompts=p.jsonl"])
    assert list(cfg.policy.modalities) == modalities
    assert cfg.policy.cot == (cot_rows.model.cot if plans else None)
    assert cfg.model.bundle == cot_rows.model.bundle and cfg.model.sampling == cot_rows.model.sampling
    base = compose_entry("train_grpo", ["+experiment=shapes/grpo_janus"])
    same = ["reward", "data", "grpo", "train", "seed"]
    assert OmegaConf.to_container(OmegaConf.masked_copy(cfg, same), resolve=True) == OmegaConf.to_container(
        OmegaConf.masked_copy(base, same), resolve=True)
    assert cfg.grpo.group_size * cfg.grpo.prompts_per_step * cfg.train.max_steps == 512  # grpo_showo's budget
