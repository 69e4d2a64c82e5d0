"""Judge-data builder pieces: roll-out labels (paper §5), per-line balance, tag balancing (reward_models/judge_data.py,
reward_models/rollouts.py), on a tiny random Show-o with a tiny MAGVIT-v2 and a scripted labeller."""
from __future__ import annotations

import pytest
import torch

from reward_models.judge_data import Item, balance, clarity_steps, per_line_counts, rollout_lines
from reward_models.rollouts import fork_state, rollout_seed, sample_paths
from showo.factory import build_tiny_showo
from common.seeding import generators
from tests.helpers import ScriptedVerdict, parity_labeller
from tests.search.search_doubles import TINY_VQ, WORDS

STEPS = 4



@pytest.fixture(scope="module")
def pipe():
    return build_tiny_showo(WORDS, vq=TINY_VQ, seed=0).pipeline()


LINES = [{"prompt": "a photo of a red circle", "tag": "colors"}, {"prompt": "a blue square", "tag": "colors"}]


def _sample(pipe, jobs, batch_size, rollout_steps=lambda i, k: set(), rollouts=3):
    return list(sample_paths(pipe, LINES, jobs, lambda i, k: 100 * i + k, labeller=parity_labeller,
                             guidance_scale=1.5, num_steps=STEPS, keep=lambda i, k: {1}, rollout_steps=rollout_steps,
                             rollouts=rollouts, seed=5, batch_size=batch_size))


def test_rollouts_continue_the_step_state_with_fresh_seeds_and_leave_the_path_alone(pipe):
    jobs = [(0, 0), (1, 0), (1, 1)]
    plain = _sample(pipe, jobs, batch_size=3)
    rolled = _sample(pipe, jobs, batch_size=2, rollout_steps=lambda i, k: {0, 2} if k == 0 else set())
    for a, b in zip(plain, rolled):  # same path whether or not it was rolled out, whatever the batch
        assert torch.equal(a.final.tokens, b.final.tokens)
        assert torch.equal(a.step_tokens[1], b.step_tokens[1])
    assert sorted(rolled[0].rollouts) == [0, 2] and not rolled[2].rollouts
    # roll-out j of step s == the path's own state after step s, continued with generator rollout_seed(5, i, k, s, j)
    state = pipe.prepare([LINES[1]["prompt"]], guidance_scale=1.5, num_inference_steps=STEPS, generator=generators([100]))
    pipe.step(state)
    state.generator = generators([rollout_seed(5, 1, 0, 0, 2)])
    while not state.done:
        pipe.step(state)
    assert torch.equal(state.final_tokens[0], rolled[1].rollouts[0][2].tokens)
    for sample in rolled[:2]:
        for step, outcomes in sample.rollouts.items():
            assert len(outcomes) == 3
            assert sample.rollout_label(step) == any(o.verdict.correct for o in outcomes)  # the paper's "any" rule


def test_fork_state_is_independent_of_the_original(pipe):
    state = pipe.prepare(["a red circle", "a blue square"], guidance_scale=1.5, num_inference_steps=STEPS,
                         generator=generators([1, 2]))
    pipe.step(state)
    tokens = state.tokens.clone()
    fork = fork_state(state, [1, 1, 0], generators([7, 8, 9]))
    while not fork.done:
        pipe.step(fork)
    assert torch.equal(state.tokens, tokens) and state.step_index == 1 and state.batch_size == 2
    assert fork.batch_size == 3 and fork.prompts == ["a blue square", "a blue square", "a red circle"]
    with pytest.raises(ValueError, match="3 rows but 1 generators"):
        fork_state(state, [0, 1, 1], generators([1]))


def _items(spec):
    return [Item(f"{source}{n}", None, ScriptedVerdict(ok), source) for source, ok, count in spec for n in range(count)]


def test_balance_keeps_as_many_yes_as_no_in_priority_order():
    items = _items([("ground_truth", True, 5), ("near_miss", False, 6), ("rollout", True, 2), ("path", True, 1),
                    ("rollout", False, 3), ("path", False, 4)])
    kept = balance(items, per_label=4, near_miss_share=0.5)
    assert [it.name for it in kept] == ["path0", "rollout0", "rollout1", "ground_truth0",  # own first, then renders
                                        "near_miss0", "near_miss1", "path0", "path1"]       # half near misses
    # own negatives run short: near misses fill in; positives run short: both sides are cut to the smaller one
    kept = balance(_items([("path", False, 1), ("near_miss", False, 5), ("ground_truth", True, 9)]), 4)
    assert [it.name for it in kept if not it.correct] == ["near_miss0", "near_miss1", "near_miss2", "path0"]
    kept = balance(_items([("path", True, 2), ("near_miss", False, 5)]), 4, near_miss_share=1.0)
    assert sum(it.correct for it in kept) == sum(not it.correct for it in kept) == 2


def test_tag_balancing_and_rule_scaling():
    lines = [{"tag": "a"}] * 2 + [{"tag": "b"}] * 10
    assert per_line_counts(lines, 4, 0) == [4] * 12
    assert per_line_counts(lines, 4, 30) == [15, 15] + [4] * 10  # ceil(30 / 2); b: max(4, 3)
    assert rollout_lines(lines, 1) == {0, 2} and rollout_lines(lines, None) == set(range(12))
    assert clarity_steps(18) == (11, 10) and clarity_steps(12) == (7, 7)
