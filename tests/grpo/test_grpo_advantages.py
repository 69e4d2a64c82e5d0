"""Group z-score advantages on numbers derived by hand (t2i_r1.md §6.1 step 4)."""
import math

import pytest
import torch

from grpo.advantages import GroupZScore, group_advantages, zero_std_groups


def test_official_group_zscore_by_hand():
    # Group 1: r = [0, 0, 2, 2], mean 1, deviations [-1, -1, 1, 1].
    #   unbiased variance = (1 + 1 + 1 + 1) / (4 - 1) = 4/3, std = 2/sqrt(3) = 1.1547...
    #   A = +-1 / (2/sqrt(3) + 1e-4)
    # Group 2: r = [5, 5, 5, 5]: deviations 0 -> A = 0 exactly (std 0, the 1e-4 keeps it finite).
    rewards = torch.tensor([0.0, 0.0, 2.0, 2.0, 5.0, 5.0, 5.0, 5.0], dtype=torch.float64)
    a = 1 / (2 / math.sqrt(3) + 1e-4)
    want = torch.tensor([-a, -a, a, a, 0.0, 0.0, 0.0, 0.0], dtype=torch.float64)
    got = group_advantages(rewards, 4)
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, want, rtol=1e-14, atol=0)
    assert got[4:].eq(0).all()
    torch.testing.assert_close(GroupZScore()(rewards, 4), want, rtol=1e-14, atol=0)


def test_population_std_and_pairs_by_hand():
    # [0, 0, 2, 2] with the population std: variance 4/4 = 1 -> A = +-1 / (1 + 1e-4).
    rewards = torch.tensor([0.0, 0.0, 2.0, 2.0], dtype=torch.float64)
    a = 1 / (1 + 1e-4)
    torch.testing.assert_close(group_advantages(rewards, 4, unbiased=False), torch.tensor([-a, -a, a, a], dtype=torch.float64))
    # A pair [0, 1]: mean 0.5, unbiased std = sqrt(0.5^2 * 2 / 1) = sqrt(0.5) -> A = +-0.5 / (sqrt(0.5) + 1e-4).
    b = 0.5 / (math.sqrt(0.5) + 1e-4)
    got = group_advantages(torch.tensor([0.0, 1.0], dtype=torch.float64), 2)
    torch.testing.assert_close(got, torch.tensor([-b, b], dtype=torch.float64), rtol=1e-14, atol=0)
    # eps = 0 recovers the plain z-score: +-1/sqrt(2) * sqrt(2) = +-0.7071...
    got = group_advantages(torch.tensor([0.0, 1.0], dtype=torch.float64), 2, eps=0.0)
    torch.testing.assert_close(got, torch.tensor([-math.sqrt(0.5), math.sqrt(0.5)], dtype=torch.float64))


def test_centring_only_and_integer_rewards():
    got = group_advantages(torch.tensor([1, 2, 6]), 3, scale=False)  # mean 3
    assert got.tolist() == [-2.0, -1.0, 3.0]


def test_zero_std_groups_is_exact_equality():
    rewards = torch.tensor([0.1, 0.1, 0.1, 0.3, 0.3, 0.30000001], dtype=torch.float64)
    assert zero_std_groups(rewards, 3).tolist() == [True, False]


def test_groups_must_stay_whole():
    with pytest.raises(ValueError, match="whole number of groups of 4"):
        group_advantages(torch.zeros(6), 4)
    with pytest.raises(ValueError, match="group_size >= 2"):
        group_advantages(torch.zeros(3), 1)
    with pytest.raises(ValueError, match="1-D"):
        group_advantages(torch.zeros(2, 2), 2)
