"""scripts/train_dpo.py on a tiny Show-o (CPU): learning, accumulation, resume, precomputed reference, guidance."""
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from safetensors.torch import load_file

from dpo.batch import collate_pairs, mask_pairs, pair_logprobs
from dpo.data import load_pairs, save_pairs
from dpo.guidance import MarginPairWeights, OnlineRewardGuidance
from dpo.loss import SigmoidLoss, dpo_loss
from dpo.reference import FrozenReference
from dpo.toy import MeanChannelJudge, toy_pairs
from dpo.trainer import DPOObjective
from showo.factory import build_tiny_showo, load_bundle
from showo.logprob import MaskingConfig
from showo.prompting import T2IPrompting
from tests.helpers import TINY_VQ, compose_entry, load_recipe, read_metrics

REPO = Path(__file__).resolve().parents[2]
PROMPTS = ["a red circle", "a blue square", "two green triangle", "a yellow circle"]


RECIPE = load_recipe("train_dpo")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("dpo_world")
    bundle = build_tiny_showo(sorted({w for p in PROMPTS for w in p.split()}), vq=TINY_VQ, seed=0)
    bundle.save_pretrained(root / "bundle")
    save_pairs(root / "pairs.jsonl", toy_pairs(bundle.layout, PROMPTS, 8, seed=0))
    return root


def _cfg(world, run_dir, *overrides):
    return compose_entry("train_dpo", [
        "model=showo_bundle", f"model.bundle.directory={world / 'bundle'}", f"data.pairs={world / 'pairs.jsonl'}",
        f"run_dir={run_dir}", "train.mixed_precision=no", "train.optimizer.lr=1e-3", "train.warmup_ratio=0.25",
        "train.global_batch_size=4", *overrides])


def _weights(final_dir):
    return load_file(str(Path(final_dir) / "showo" / "pytorch_model.safetensors"))


def _eval_rewards(model_dir, world):
    """Implied rewards of a trained policy vs the initial model on all pairs, with fixed epoch-0 masks."""
    init, trained = load_bundle(world / "bundle"), load_bundle(model_dir)
    pairs = load_pairs(world / "pairs.jsonl", init.layout)
    ids = T2IPrompting(init.tokenizer, init.layout).tokenize([p.prompt for p in pairs])
    batch = collate_pairs(pairs, ids, list(range(len(pairs))), 0)
    masked = mask_pairs(batch, init.layout, MaskingConfig(cond_dropout_prob=0.0, num_draws=2), seed=123)
    with torch.no_grad():
        out = dpo_loss(*pair_logprobs(trained.model, masked, init.layout), *pair_logprobs(init.model, masked, init.layout),
                       SigmoidLoss(beta=0.1))
    return out


def test_twenty_steps_raise_margin_and_accuracy(world, tmp_path):
    final = RECIPE.run(_cfg(world, tmp_path / "run", "train.epochs=10", "train.checkpoint_every=100"))
    metrics = read_metrics(tmp_path / "run")
    assert [m["step"] for m in metrics] == list(range(1, 21))
    before = _eval_rewards(world / "bundle", world)
    assert before.margins.abs().max().item() == 0.0 and before.accuracy.mean().item() == 0.0
    after = _eval_rewards(final, world)
    assert after.margins.mean().item() > 0.2
    assert after.accuracy.mean().item() >= 0.875
    assert metrics[-1]["train/dpo_loss"] < metrics[0]["train/dpo_loss"] - 0.2
    for key in ("train/loss", "rewards/chosen", "rewards/rejected", "rewards/margin", "rewards/accuracy"):
        assert key in metrics[-1]
    assert (tmp_path / "run" / "config.yaml").is_file()


def test_accumulation_matches_a_bigger_batch(world, tmp_path):
    # plain SGD: the weights move by lr x the accumulated gradient (Adam would amplify float noise on tiny gradients)
    sgd = ("~train.optimizer", "+train.optimizer={_target_: torch.optim.SGD, _partial_: true, lr: 0.1}", "train.max_steps=2")
    a = RECIPE.run(_cfg(world, tmp_path / "a", *sgd, "train.per_device_batch_size=1"))
    b = RECIPE.run(_cfg(world, tmp_path / "b", *sgd, "train.per_device_batch_size=4"))
    wa, wb = _weights(a), _weights(b)
    init = _weights(world / "bundle")
    assert any(not torch.equal(wa[k], init[k]) for k in wa)
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], atol=1e-6, rtol=1e-5)
    for ma, mb in zip(read_metrics(tmp_path / "a"), read_metrics(tmp_path / "b")):
        assert ma["train/loss"] == pytest.approx(mb["train/loss"], abs=1e-5)


def test_kill_and_resume_gives_the_same_weights(world, tmp_path):
    common = ("train.epochs=3", "train.global_batch_size=2", "train.checkpoint_every=2")  # 12 steps
    full = RECIPE.run(_cfg(world, tmp_path / "full", *common))
    killed = tmp_path / "killed"
    assert RECIPE.run(_cfg(world, killed, *common, "train.stop_after_steps=5")) == killed  # checkpoint at 4, step 5 lost
    assert not (killed / "final").exists()
    resumed = RECIPE.run(_cfg(world, killed, *common))
    wf, wr = _weights(full), _weights(resumed)
    assert all(torch.equal(wf[k], wr[k]) for k in wf)
    assert [m["step"] for m in read_metrics(killed)] == list(range(1, 13))
    assert read_metrics(killed) == read_metrics(tmp_path / "full")


def test_precomputed_reference_matches_frozen_copy(world, tmp_path):
    common = ("train.max_steps=3", "train.global_batch_size=2")
    frozen = RECIPE.run(_cfg(world, tmp_path / "frozen", *common))
    pre = RECIPE.run(_cfg(world, tmp_path / "pre", "dpo=precomputed", *common))
    for mf, mp in zip(read_metrics(tmp_path / "frozen"), read_metrics(tmp_path / "pre")):
        for key in ("train/loss", "rewards/chosen", "rewards/margin"):
            assert mf[key] == pytest.approx(mp[key], abs=1e-5)
    wf, wp = _weights(frozen), _weights(pre)
    for k in wf:
        torch.testing.assert_close(wf[k], wp[k], atol=1e-5, rtol=1e-4)
    caches = list((tmp_path / "pre" / "reference_cache").glob("ref-*.safetensors"))
    assert len(caches) == 1
    assert load_file(str(caches[0]))["logprobs"].shape == (1, 8, 2)


def test_reference_none_needs_an_explicit_flag(world, tmp_path):
    with pytest.raises(ValueError, match="reference_free=true"):
        RECIPE.run(_cfg(world, tmp_path / "r", "dpo.reference._target_=dpo.reference.no_reference", "train.max_steps=1"))


def _objective(bundle, pairs, **extra):
    return DPOObjective(bundle.layout, MaskingConfig(), 0, SigmoidLoss(beta=0.1), FrozenReference(bundle.model, bundle.layout),
                        tokenizer=bundle.tokenizer, vq_model=bundle.vq_model, **extra)


def _grads(model, objective, batch):
    model.zero_grad()
    loss, _ = objective(model, batch, step=0)
    loss.backward()
    return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]).clone()


@pytest.mark.parametrize("variant", ["online", "margin"])
def test_guided_gradient_differs_from_plain_dpo(world, variant):
    """The released guidance term had no gradient (issue #22): this test fails on such a term."""
    bundle = load_bundle(world / "bundle")
    bundle.model.train()
    pairs = load_pairs(world / "pairs.jsonl", bundle.layout)
    pairs[1].chosen_score = 0.6  # margins 1.0, 0.6, 1.0, 1.0
    ids = T2IPrompting(bundle.tokenizer, bundle.layout).tokenize([p.prompt for p in pairs])
    batch = collate_pairs(pairs, ids, [0, 1, 2, 3], 0)
    plain = _grads(bundle.model, _objective(bundle, pairs), batch)
    if variant == "online":
        guidance = OnlineRewardGuidance(MeanChannelJudge(), coef=1.0, baseline=0.5, sampling={"num_inference_steps": 2})
        guided_obj = _objective(bundle, pairs, guidance=guidance)
        guided = _grads(bundle.model, guided_obj, batch)
        # the difference is exactly the guidance term's own gradient, and that is not zero
        codes, rewards = guidance.sample(bundle.model, bundle.layout, bundle.tokenizer, bundle.vq_model, batch, 0, 0)
        assert not torch.allclose(rewards, torch.full_like(rewards, 0.5))
        bundle.model.zero_grad()
        guidance.term(bundle.model, codes, rewards, batch, bundle.layout, 0, 0).backward()
        term = torch.cat([p.grad.flatten() for p in bundle.model.parameters() if p.grad is not None])
        assert term.abs().max() > 1e-6
        torch.testing.assert_close(guided - plain, term, atol=1e-6, rtol=1e-4)
    else:
        guided = _grads(bundle.model, _objective(bundle, pairs, pair_weights=MarginPairWeights(scale=1.0)), batch)
    assert (guided - plain).abs().max() > 1e-6


def test_chosen_nll_anchor_adds_the_chosen_images_nll_per_scored_token(world, tmp_path):
    bundle = load_bundle(world / "bundle")
    bundle.model.train()
    pairs = load_pairs(world / "pairs.jsonl", bundle.layout)
    ids = T2IPrompting(bundle.tokenizer, bundle.layout).tokenize([p.prompt for p in pairs])
    batch = collate_pairs(pairs, ids, [0, 1, 2, 3], 0)
    plain, plain_metrics = _objective(bundle, pairs)(bundle.model, batch, step=0)
    anchored, metrics = _objective(bundle, pairs, chosen_nll_weight=0.5)(bundle.model, batch, step=0)
    # by hand: the chosen rows' summed log-probs over their masked tokens, divided by how many were masked
    masked = mask_pairs(batch, bundle.layout, MaskingConfig(), 0)
    ell_chosen, _ = pair_logprobs(bundle.model, masked, bundle.layout)
    scored = (masked.labels[: len(batch), bundle.layout.text_len:] != -100).sum(-1).float()
    nll = -(ell_chosen / scored).mean()
    assert nll > 0 and metrics["train/chosen_nll"] == pytest.approx(float(nll), rel=1e-5)
    assert float(anchored - plain) == pytest.approx(0.5 * float(nll), rel=1e-5)
    assert "train/chosen_nll" not in plain_metrics
    with pytest.raises(ValueError, match="chosen_nll_weight must be >= 0"):
        _objective(bundle, pairs, chosen_nll_weight=-1.0)
    RECIPE.run(_cfg(world, tmp_path / "a", "dpo.chosen_nll_weight=1.0", "train.max_steps=1"))
    (m,) = read_metrics(tmp_path / "a")
    assert m["train/chosen_nll"] > 0


def test_guided_recipe_runs_with_a_scripted_judge(world, tmp_path):
    cfg = _cfg(world, tmp_path / "g", "dpo=parm_guided", "train.max_steps=1",
               "~dpo.guidance.judge", "+dpo.guidance.judge={_target_: dpo.toy.MeanChannelJudge}",
               "model.sampling.num_inference_steps=2")
    RECIPE.run(cfg)
    (m,) = read_metrics(tmp_path / "g")
    assert "guidance/reward" in m and m["guidance/term"] != 0.0


@pytest.mark.parametrize("name", sorted(p.stem for p in (REPO / "configs" / "dpo").glob("*.yaml")))
def test_every_dpo_config_composes_and_builds_its_loss(world, tmp_path, name):
    cfg = _cfg(world, tmp_path / "c", f"dpo={name}")
    loss = instantiate(cfg.dpo.loss)
    assert loss.beta > 0
    assert callable(instantiate(cfg.dpo.reference))


@pytest.mark.slow
def test_two_processes_split_the_global_batch(world, tmp_path):
    """2 CPU processes x 2 pairs == 1 process x 4 pairs only if the ranks see disjoint halves of each global batch."""
    import os
    import subprocess
    import sys

    sgd = ["~train.optimizer", "+train.optimizer={_target_: torch.optim.SGD, _partial_: true, lr: 0.1}", "train.max_steps=2"]
    one = RECIPE.run(_cfg(world, tmp_path / "one", *sgd))
    # torchrun: accelerate's launcher starts a single process for --cpu without an MPI setup
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(REPO / "scripts" / "train_dpo.py"),
           "model=showo_bundle", f"model.bundle.directory={world / 'bundle'}", f"data.pairs={world / 'pairs.jsonl'}",
           f"run_dir={tmp_path / 'two'}", "train.mixed_precision=no", "train.global_batch_size=4", *sgd]
    done = subprocess.run(cmd, cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    w1, w2 = _weights(one), _weights(tmp_path / "two" / "final")
    for k in w1:
        torch.testing.assert_close(w1[k], w2[k], atol=1e-6, rtol=1e-5)
    m1, m2 = read_metrics(tmp_path / "one"), read_metrics(tmp_path / "two")
    assert [m["train/loss"] for m in m1] == pytest.approx([m["train/loss"] for m in m2], abs=1e-5)
