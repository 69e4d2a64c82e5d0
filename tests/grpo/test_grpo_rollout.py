"""Rollout container, completion masks, grouping over processes, rewards -> advantages and metric names."""
import math

import pytest
import torch
from PIL import Image

from grpo.grouping import GroupSchedule, micro_batch_weight, sample_generators, sample_seed
from grpo.metrics import COT_LENGTH, ZERO_STD_GROUPS, reward_metrics, rollout_metrics
from grpo.rewards import RewardBatch, assign_rewards, score_samples, sum_rewards
from grpo.rollout import Rollout, completion_mask
from reward_models.base import JudgeCost, JudgeOutput
from reward_models.ensemble import Identity, JudgeEnsemble, ZScore


def test_completion_mask_counts_through_the_first_eos():
    ids = torch.tensor([[5, 7, 2, 0, 0], [5, 5, 5, 5, 5], [2, 9, 2, 9, 9]])
    want = [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]]
    assert completion_mask(ids, eos_token_id=2).tolist() == want


def _rollout(rewards=None):
    ids = torch.tensor([[4, 2, 0], [4, 4, 2], [3, 2, 0], [3, 3, 3]])
    return Rollout(
        prompts=["a cat"] * 2 + ["a dog"] * 2,
        group_size=2,
        text_ids=ids,
        text_mask=completion_mask(ids, 2),
        image_ids=torch.arange(8).view(4, 2),
        old_logps={"text": torch.zeros(4, 3), "image": torch.zeros(4, 2)},
        prompt_index=torch.tensor([7, 7, 3, 3]),
        inputs={"prompt_ids": torch.ones(4, 5, dtype=torch.long)},
    )


def test_rollout_masks_select_and_micro_batches():
    r = _rollout()
    assert r.num_groups == 2 and len(r) == 4
    masks = r.masks()
    assert masks["text"].tolist() == [[1, 1, 0], [1, 1, 1], [1, 1, 0], [1, 1, 1]]
    assert masks["image"].eq(1).all() and masks["image"].shape == (4, 2)
    assert r.cot_length.tolist() == [2.0, 3.0, 2.0, 3.0]
    first, second = r.micro_batches(1)
    assert first.prompts == ["a cat", "a cat"] and second.prompt_index.tolist() == [3, 3]
    assert second.image_ids.tolist() == [[4, 5], [6, 7]] and second.inputs["prompt_ids"].shape == (2, 5)
    assert list(r.masks(["image"])) == ["image"]
    with pytest.raises(ValueError, match="micro-batches of 3 groups"):
        r.micro_batches(3)


def test_rollout_validation_names_the_field():
    with pytest.raises(ValueError, match="whole number of groups"):
        Rollout(["a"] * 3, 2, torch.zeros(3, 1), torch.zeros(3, 1), torch.zeros(3, 1))
    with pytest.raises(ValueError, match="must repeat one prompt"):
        Rollout(["a", "b"], 2, torch.zeros(2, 1), torch.zeros(2, 1), torch.zeros(2, 1))
    with pytest.raises(ValueError, match=r"old_logps\['image'\]"):
        Rollout(["a"] * 2, 2, torch.zeros(2, 1), torch.zeros(2, 1), torch.zeros(2, 4), old_logps={"image": torch.zeros(2, 3)})
    with pytest.raises(ValueError, match="unknown modalities"):
        Rollout(["a"] * 2, 2, torch.zeros(2, 1), torch.zeros(2, 1), torch.zeros(2, 4), ref_logps={"audio": torch.zeros(2, 3)})


def test_schedule_keeps_whole_groups_and_is_world_size_invariant():
    schedule = GroupSchedule(num_prompts=10, prompts_per_step=4, seed=3)
    # Epoch-wise permutation: steps 0-1 and the first half of step 2 visit each of the 10 prompts once.
    first_epoch = schedule.step_prompts(0) + schedule.step_prompts(1) + schedule.step_prompts(2)[:2]
    assert sorted(first_epoch) == list(range(10))
    for step in range(4):
        whole = schedule.step_prompts(step)
        for world in (1, 2, 4):
            blocks = [schedule.rank_prompts(step, rank, world) for rank in range(world)]
            assert [p for block in blocks for p in block] == whole  # ranks hold contiguous blocks, in order
            assert all(len(block) == 4 // world for block in blocks)
    assert list(schedule.rank_positions(1, 2)) == [2, 3]
    with pytest.raises(ValueError, match="multiple of 3"):
        schedule.rank_prompts(0, 0, 3)
    assert GroupSchedule(5, 2, shuffle=False).step_prompts(2) == [4, 0]


def test_sample_seeds_depend_on_global_position_only():
    gens = sample_generators(seed=1, step=2, positions=[0, 1], group_size=3)
    assert len(gens) == 6
    seeds = [sample_seed(1, 2, p, g) for p in (0, 1) for g in range(3)]
    assert len(set(seeds)) == 6 and all(0 <= s < 2**63 for s in seeds)
    # A rank holding position 1 alone draws the same numbers as the single process does for position 1.
    alone = sample_generators(seed=1, step=2, positions=[1], group_size=3)
    draws = [torch.rand(2, generator=g) for g in gens[3:]]
    assert all(torch.equal(a, torch.rand(2, generator=g)) for a, g in zip(draws, alone))
    assert sample_seed(1, 2, 0, 0) != sample_seed(1, 3, 0, 0) != sample_seed(2, 2, 0, 0)


def test_micro_batch_weight_gives_the_mean_over_groups():
    # A rank holds 4 groups, split into micro-batches of 1 + 3 groups with group-mean losses L1, L2:
    # 1/4 * L1 + 3/4 * L2 is the mean over the 4 groups.
    assert micro_batch_weight(1, 4) == 0.25 and micro_batch_weight(3, 4) == 0.75
    with pytest.raises(ValueError):
        micro_batch_weight(5, 4)


class FixedJudge:
    def __init__(self, scores):
        self.scores = torch.tensor(scores)

    def score(self, prompts, images):
        n = len(prompts)
        return JudgeOutput(scores=self.scores[:n].clone(), cost=JudgeCost(forward_passes=n, images_scored=n))


IMAGES = [Image.new("RGB", (4, 4))] * 4
PROMPTS = ["a cat", "a cat", "a dog", "a dog"]


def test_official_sum_then_group_advantages_by_hand():
    # HPS-like small rewards + detector-like rewards, plain sum (Identity, unit weights):
    #   totals = [0.2 + 1, 0.3 + 0, 0.25 + 0.5, 0.25 + 0.5] = [1.2, 0.3, 0.75, 0.75]
    # Group 1: mean 0.75, deviations +-0.45, unbiased std = sqrt(2 * 0.45^2 / 1) = 0.45 sqrt(2)
    #   -> A = +-0.45 / (0.45 sqrt(2) + 1e-4); group 2 constant -> A = 0, a zero-std group.
    judge = JudgeEnsemble({"hps": FixedJudge([0.2, 0.3, 0.25, 0.25]), "gdino": FixedJudge([1.0, 0.0, 0.5, 0.5])}, normalizer=Identity())
    rewards = score_samples(judge, PROMPTS, IMAGES, group_size=2)
    torch.testing.assert_close(rewards.total, torch.tensor([1.2, 0.3, 0.75, 0.75]))
    assert set(rewards.per_expert) == {"hps", "gdino"} and rewards.cost.images_scored == 8
    r = assign_rewards(_rollout(), rewards)
    a = 0.45 / (0.45 * math.sqrt(2) + 1e-4)
    # float32 rewards: 1.2 - 0.75 is 0.45 to ~1e-7 relative, the tolerance below.
    torch.testing.assert_close(r.advantages, torch.tensor([a, -a, 0.0, 0.0]), rtol=1e-5, atol=0)
    assert r.advantages[2:].eq(0).all()
    metrics = rollout_metrics(r)
    assert metrics[ZERO_STD_GROUPS] == 0.5 and metrics[COT_LENGTH] == 2.5
    assert metrics["rewards/hps/mean"] == pytest.approx(0.25) and metrics["rewards/gdino/mean"] == pytest.approx(0.5)
    # std of [1, 0, 0.5, 0.5] (unbiased): sqrt(0.5 / 3)
    assert metrics["rewards/gdino/std"] == pytest.approx(math.sqrt(0.5 / 3))
    assert metrics["reward/group_std"] == pytest.approx(0.45 * math.sqrt(2) / 2, rel=1e-6)


def test_ensemble_normalises_within_each_group():
    # ZScore per group of 2 (population std): each group of two distinct values becomes [-1, +1].
    judge = JudgeEnsemble({"a": FixedJudge([1.0, 3.0, 10.0, 30.0])}, normalizer=ZScore(eps=0.0))
    rewards = score_samples(judge, PROMPTS, IMAGES, group_size=2)
    torch.testing.assert_close(rewards.total, torch.tensor([-1.0, 1.0, -1.0, 1.0]))
    assert rewards.per_expert["a"].tolist() == [1.0, 3.0, 10.0, 30.0]  # raw scores are what is logged
    single = score_samples(FixedJudge([1.0, 2.0, 3.0, 4.0]), PROMPTS, IMAGES, 2, name="orm")
    assert list(single.per_expert) == ["orm"]
    with pytest.raises(ValueError, match="whole number of groups"):
        judge.score(PROMPTS[:3], IMAGES[:3], group_size=2)


def test_sum_rewards_and_metric_names():
    per = {"hps": torch.tensor([0.2, 0.4]), "orm": torch.tensor([1.0, 0.0])}
    torch.testing.assert_close(sum_rewards(per), torch.tensor([1.2, 0.4]))
    torch.testing.assert_close(sum_rewards(per, {"orm": 0.5}), torch.tensor([0.7, 0.4]))
    with pytest.raises(ValueError, match="unknown rewards"):
        sum_rewards(per, {"git": 1.0})
    metrics = reward_metrics(per, sum_rewards(per), group_size=2)
    assert set(metrics) == {
        "rewards/hps/mean", "rewards/hps/std", "rewards/orm/mean", "rewards/orm/std",
        "reward/mean", "reward/std", "reward/group_std", ZERO_STD_GROUPS,
    }
    with pytest.raises(ValueError, match="no aggregated reward"):
        rollout_metrics(_rollout())
    bad = RewardBatch(total=torch.zeros(3), per_expert={})
    with pytest.raises(ValueError, match="rewards for a rollout of 4"):
        assign_rewards(_rollout(), bad)
