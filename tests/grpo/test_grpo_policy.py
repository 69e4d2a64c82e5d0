"""GRPO policies on tiny random generators: rollouts, teacher-forced log-probs, one update, the freeze list."""
import copy

import pytest
import torch

from dpo.toy import MeanChannelJudge
from grpo.advantages import GroupZScore
from grpo.janus_policy import OFFICIAL_FROZEN, JanusGRPOPolicy
from grpo.objective import GRPOLoss, importance_ratio
from grpo.policy import LogProbModule, freeze, trim_left
from grpo.rewards import assign_rewards, score_samples
from grpo.showo_policy import ShowoGRPOPolicy
from grpo.trainer import micro_batch_logps
from janus.tiny import build_tiny_janus
from showo.factory import build_tiny_showo

PROMPTS = ["a red cat", "two blue dogs on the bench"]
WORDS = sorted({w for p in PROMPTS for w in p.split()})
G = 4


def _janus(**kwargs):
    bundle = build_tiny_janus(WORDS, seed=0)
    settings = dict(sampling={}, cot={"max_new_tokens": 8})
    settings.update(kwargs)
    return JanusGRPOPolicy(bundle, **settings)


def _rows(prompts=PROMPTS):
    return [p for p in prompts for _ in range(G)]


def _gens(n, offset=0):
    return [torch.Generator().manual_seed(offset + i) for i in range(n)]


def _scored(policy, prompts=PROMPTS):
    rows = _rows(prompts)
    samples = policy.rollout(policy.model, rows, _gens(len(rows)), G)
    # the mean red channel: a reward that differs between samples of a group
    assign_rewards(samples.rollout, score_samples(MeanChannelJudge(), rows, samples.images, G), GroupZScore())
    return samples


def test_janus_rollout_holds_groups_cots_and_images():
    policy = _janus()
    samples = _scored(policy)
    r = samples.rollout
    assert len(r) == len(samples.images) == len(samples.texts) == 2 * G
    assert r.image_ids.shape == (2 * G, policy.layout.num_image_tokens)
    assert r.text_mask.sum(1).min() >= 1 and r.text_mask.shape[1] <= 8
    # the image prompt of each row is "{prompt}. {cot}": at least as long as the raw prompt's
    assert r.inputs["image_prompt_mask"].sum(1).min() > len(PROMPTS[0].split())
    # z-scores within each group sum to 0 (float32: rewards differ by ~1e-2, so the division amplifies rounding)
    assert (r.advantages.view(2, G).sum(1).abs() < 1e-4).all()


def test_rollout_does_not_depend_on_the_rows_rolled_out_with_it():
    policy = _janus()
    rows = _rows()
    together = policy.rollout(policy.model, rows, _gens(len(rows)), G).rollout
    alone = policy.rollout(policy.model, rows[G:], _gens(G, offset=G), G).rollout
    assert torch.equal(together.image_ids[G:], alone.image_ids)
    width = alone.text_ids.shape[1]
    assert torch.equal(together.text_ids[G:, :width], alone.text_ids)


def test_teacher_forced_logps_match_the_rollouts_recorded_ones():
    """The text log-probs of the policy equal those the CoT sampler recorded (T = 1, before top-k), and a micro-batch
    trimmed out of a bigger rollout scores exactly as the rows rolled out alone."""
    from janus.cot import SemanticCoT

    policy = _janus()
    rows = _rows()
    samples = policy.rollout(policy.model, rows, _gens(len(rows)), G)
    with torch.no_grad():
        lps = policy.logps(policy.model, samples.rollout)
        recorded = SemanticCoT(policy.model, policy.layout, policy.tokenizer, max_new_tokens=8).sample(
            rows, generator=_gens(len(rows))).sample.logprobs
    mask = samples.rollout.text_mask.bool()
    # float32: the teacher-forced pass and the KV-cached loop sum in different orders (~1e-6 apart)
    torch.testing.assert_close(lps["text"][mask], recorded[:, : mask.shape[1]][mask], atol=1e-5, rtol=1e-5)
    assert lps["image"].shape == samples.rollout.image_ids.shape and (lps["image"] < 0).all()
    # a micro-batch selected from the two-group rollout is trimmed to its own padding: bit-identical tensors, and so
    # bit-identical log-probs, to the group rolled out alone
    alone = policy.rollout(policy.model, rows[G:], _gens(G, offset=G), G).rollout
    second = samples.rollout.select(range(G, 2 * G))
    for key in ("reasoning", "image_prompt"):
        trimmed = trim_left(second.inputs[f"{key}_ids"], second.inputs[f"{key}_mask"])
        assert all(torch.equal(a, b) for a, b in zip(trimmed, (alone.inputs[f"{key}_ids"], alone.inputs[f"{key}_mask"])))
    with torch.no_grad():
        mine, theirs = policy.logps(policy.model, second), policy.logps(policy.model, alone)
    # the same tensors through the same model: equal up to float32 rounding of the CPU kernels (the exact check is the
    # ids and masks above: nothing of the other group leaks into the micro-batch)
    torch.testing.assert_close(mine["image"], theirs["image"], atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(mine["text"][:, : theirs["text"].shape[1]], theirs["text"], atol=1e-6, rtol=1e-6)


def test_official_freeze_list_trains_only_the_language_model():
    policy = _janus()
    trainable = freeze(policy.model, policy.frozen)
    assert trainable and all(n.startswith(("model.language_model.", "lm_head.")) for n in trainable)
    assert any(n.startswith("lm_head.") for n in trainable)
    frozen = [n for n, p in policy.model.named_parameters() if not p.requires_grad]
    for prefix in OFFICIAL_FROZEN:
        assert any(n.startswith(prefix) for n in frozen), prefix
    token_only = _janus(cot=None, modalities=("image",))
    assert not any(n.startswith("lm_head.") for n in freeze(token_only.model, token_only.frozen))
    with pytest.raises(ValueError, match="match no parameter"):
        freeze(_janus().model, ["model.vision_tower."])


def _one_step(policy, samples, lr=0.05):
    """One plain-SGD GRPO step (beta 0.01, frozen copy as reference) on the rollout; returns (before, after, loss)."""
    freeze(policy.model, policy.frozen)
    reference = copy.deepcopy(policy.model).eval().requires_grad_(False)
    rollout = samples.rollout
    rollout.ref_logps = micro_batch_logps(lambda mb: policy.logps(reference, mb), rollout, 1)
    module = LogProbModule(policy.model, policy).train()
    optimizer = torch.optim.SGD([p for p in module.parameters() if p.requires_grad], lr=lr)
    with torch.no_grad():
        before = {k: v.clone() for k, v in module(rollout).items()}
    out = GRPOLoss(beta=0.01)(module(rollout), policy.masks(rollout), rollout.advantages, G,
                              ref_logps=rollout.ref_logps)
    out.loss.backward()
    optimizer.step()
    with torch.no_grad():
        after = module(rollout)
    return before, after, out


def test_one_grpo_step_changes_text_and_image_logprobs_and_starts_at_kl_zero():
    policy = _janus()
    gen_head = policy.model.model.generation_head.state_dict()
    gen_head = {k: v.clone() for k, v in gen_head.items()}
    samples = _scored(policy)
    before, after, out = _one_step(policy, samples)
    # step 0: policy == reference == behaviour. The ratio exp(lp - stopgrad(lp)) is exactly 1; the KL is 0 up to the
    # rounding of a gradient-enabled vs a no-grad float32 pass (|d| < 1e-5 gives k3 ~ d^2 / 2 < 1e-10)
    assert 0.0 <= out.metrics["kl"] < 1e-9 and all(float(v.abs().max()) < 1e-9 for v in out.kl.values())
    assert torch.equal(importance_ratio(before["image"], before["image"]), torch.ones_like(before["image"]))
    assert out.metrics["clip_fraction"] == 0.0
    mask = samples.rollout.text_mask.bool()
    assert (after["text"] - before["text"])[mask].abs().max() > 1e-4
    assert (after["image"] - before["image"]).abs().max() > 1e-4
    # the generation head is frozen: the image tokens moved through the language model's hidden states alone
    for k, v in policy.model.model.generation_head.state_dict().items():
        assert torch.equal(v, gen_head[k])
    # the update follows the advantages: the mean log-prob of positive-advantage samples rose relative to the others
    adv = samples.rollout.advantages
    delta = (after["image"] - before["image"]).mean(1) + ((after["text"] - before["text"]) * mask).sum(1) / mask.sum(1)
    assert delta[adv > 0].mean() > delta[adv < 0].mean()


@pytest.mark.parametrize("variant", ["token", "semantic"])
def test_ablations_train_one_modality(variant):
    kwargs = dict(cot=None, modalities=("image",)) if variant == "token" else dict(modalities=("text",))
    policy = _janus(**kwargs)
    samples = _scored(policy)
    before, after, _ = _one_step(policy, samples)
    assert set(before) == set(policy.modalities)
    key = policy.modalities[0]
    assert (after[key] - before[key]).abs().max() > 1e-4
    if variant == "token":
        assert samples.texts is None and samples.rollout.text_ids.shape[1] == 0


def test_showo_policy_scores_masked_positions_and_learns():
    vq = dict(ch=16, encoder_ch_mult=[1, 2, 2], encoder_num_res_blocks=[1, 1, 1], decoder_ch_mult=[1, 2, 2],
              decoder_num_res_blocks=[1, 1, 1], z_channels=6, codebook_dim=6, num_groups=8, resolution=16)
    bundle = build_tiny_showo(WORDS, vq=vq, seed=0)
    policy = ShowoGRPOPolicy(bundle, sampling={"guidance_scale": 1.0, "num_inference_steps": 2})
    samples = _scored(policy)
    mask = policy.masks(samples.rollout)["image"]
    assert mask.shape == samples.rollout.image_ids.shape and mask.sum() > 0
    with torch.no_grad():
        lp = policy.logps(policy.model, samples.rollout)["image"]
    assert (lp[mask == 0] == 0).all() and (lp[mask == 1] < 0).all()
    # the corruption comes from each row's own generator: rolling out a group alone gives the same masks
    alone = policy.rollout(policy.model, _rows()[G:], _gens(G, offset=G), G)
    assert torch.equal(alone.rollout.inputs["labels"], samples.rollout.inputs["labels"][G:])
    before, after, out = _one_step(policy, samples, lr=0.5)
    assert out.metrics["kl"] < 1e-9  # step 0 (see above)
    assert ((after["image"] - before["image"]) * mask).abs().max() > 1e-4
    adv = samples.rollout.advantages  # the update follows the advantages on the scored (masked) positions
    delta = ((after["image"] - before["image"]) * mask).sum(1) / mask.sum(1).clamp(min=1)
    assert delta[adv > 0].mean() > delta[adv < 0].mean()
