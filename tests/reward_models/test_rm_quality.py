"""Judge-quality metrics against numbers computed by hand (reward_models/quality.py)."""
from __future__ import annotations

import numpy as np
import pytest

from reward_models.quality import (accuracy, auc, best_of_n, expected_calibration_error, pairwise_accuracy,
                                   pairwise_counts, within_group_auc)

# group a: positives 0.9, 0.5 vs negative 0.95 -> 2 losses; group b: positive 0.5 vs negatives 0.5 (tie), 0.1 (win)
SCORES = [0.9, 0.95, 0.5, 0.5, 0.1, 0.5]
LABELS = [True, False, True, False, False, True]
GROUPS = ["a", "a", "a", "b", "b", "b"]


def test_within_group_pairs_count_ties_half_and_ignore_cross_group_pairs():
    assert pairwise_counts(SCORES, LABELS, GROUPS) == (1, 1, 4)
    assert within_group_auc(SCORES, LABELS, GROUPS) == pytest.approx(1.5 / 4)
    assert pairwise_accuracy(SCORES, LABELS, GROUPS) == pytest.approx(1 / 4)
    # across groups: positives .9 .5 .5 vs negatives .95 .5 .1 -> 4 wins, 2 ties of 9 pairs
    assert auc(SCORES, LABELS) == pytest.approx(5 / 9)


def test_a_prompt_reader_has_a_high_overall_auc_but_ranks_within_a_prompt_at_chance():
    labels = [True, True, False, True, False, False]
    groups = ["a"] * 3 + ["b"] * 3
    scores = [0.8] * 3 + [0.2] * 3  # one score per prompt, the image ignored
    assert auc(scores, labels) == pytest.approx(6 / 9)  # 4 wins + 4 ties of 9 pairs
    assert within_group_auc(scores, labels, groups) == 0.5
    assert pairwise_accuracy(scores, labels, groups) == 0.0


def test_undefined_quantities_are_none_not_numbers():
    assert within_group_auc([0.3, 0.4], [True, False], ["a", "b"]) is None  # no same-group pair
    assert auc([0.3, 0.4], [True, True]) is None
    assert expected_calibration_error([], []) is None
    assert accuracy([], []) is None
    assert best_of_n([0.1], [True], ["a"], 2) is None


def test_expected_calibration_error_by_hand():
    # 2 bins: [.05, .15] confidence .1 vs frequency .5; [.95, .85] .9 vs 1.0 -> (2 * .4 + 2 * .1) / 4
    assert expected_calibration_error([0.05, 0.15, 0.95, 0.85], [False, True, True, True], bins=2) == pytest.approx(0.25)
    assert expected_calibration_error([1.0, 0.0], [True, False], bins=10) == 0.0  # p = 1 lands in the last bin
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        expected_calibration_error([1.5], [True])


def test_accuracy_and_best_of_n_by_hand():
    assert accuracy([True, False, True], [True, True, True]) == pytest.approx(2 / 3)
    scores = [0.1, 0.9, 0.3, 0.3, 0.5, 0.2, 0.7]
    labels = [False, True, False, True, False, False, True]
    groups = ["a"] * 4 + ["b"] * 3
    # chunks: a (.1 F, .9 T) -> T; a (.3 F, .3 T) -> tie, first -> F; b (.5 F, .2 F) -> F; b's .7 T is a remainder
    assert best_of_n(scores, labels, groups, 2) == {"judge": pytest.approx(1 / 3), "random": pytest.approx(1 / 3),
                                                    "oracle": pytest.approx(2 / 3), "chunks": 3}


def test_mismatched_lengths_name_the_sizes():
    with pytest.raises(ValueError, match="3 scores, 2 labels"):
        auc([0.1, 0.2, 0.3], [True, False])
    with pytest.raises(ValueError, match="1 groups"):
        within_group_auc([0.1, 0.2], [True, False], ["a"])


def test_within_group_auc_interval_brackets_the_estimate_and_narrows_with_data():
    from reward_models.quality import within_group_auc_interval

    rng = np.random.default_rng(0)

    def sample(groups: int, per_group: int):
        labels = rng.random(groups * per_group) < 0.4
        scores = labels * 0.6 + rng.random(len(labels))  # informative but noisy: AUC about 0.8
        names = [g for g in range(groups) for _ in range(per_group)]
        return scores.tolist(), labels.tolist(), names

    small, big = sample(6, 8), sample(40, 32)
    lo_s, hi_s = within_group_auc_interval(*small, replicates=500)
    lo_b, hi_b = within_group_auc_interval(*big, replicates=500)
    assert lo_s <= within_group_auc(*small) <= hi_s and lo_b <= within_group_auc(*big) <= hi_b
    assert hi_b - lo_b < (hi_s - lo_s) / 2
    assert within_group_auc_interval(*big, replicates=500) == (lo_b, hi_b)  # seeded


def test_within_group_auc_interval_of_a_perfect_ranker_and_of_no_pairs():
    from reward_models.quality import within_group_auc_interval

    scores, labels, groups = [0.9, 0.1, 0.8, 0.2], [True, False, True, False], ["a", "a", "b", "b"]
    assert within_group_auc_interval(scores, labels, groups, replicates=200) == (1.0, 1.0)
    assert within_group_auc_interval([0.3, 0.4], [True, False], ["a", "b"]) is None
