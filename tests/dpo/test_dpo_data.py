"""Preference pairs: pairing policies, JSONL validation, epoch order and sharding across processes."""
import json

import pytest
import torch

from dpo.data import (BestWorstPairing, CandidatePool, PreferencePair, YesNoPairing, epoch_order, load_pairs, pairs_hash,
                      save_pairs, shard_batches)
from showo.tokens import TokenLayout

LAYOUT = TokenLayout(llm_vocab_size=20, codebook_size=8, num_image_tokens=4, max_seq_length=8, bos_id=0, eos_id=0)


def _pool(scores, labels=None):
    tokens = torch.arange(len(scores))[:, None].repeat(1, 4) % 8
    return CandidatePool("a cat", tokens, torch.tensor(scores), None if labels is None else torch.tensor(labels))


def test_yes_no_pairing_takes_one_yes_and_one_no():
    pool = _pool([0.9, 0.2, 0.7, 0.1, 0.6])
    for seed in range(5):
        (pair,) = YesNoPairing()(pool, torch.Generator().manual_seed(seed))
        assert pair.meta["chosen_index"] in {0, 2, 4} and pair.meta["rejected_index"] in {1, 3}
        assert pair.chosen == pool.tokens[pair.meta["chosen_index"]].tolist()
        assert pair.margin == pytest.approx(pair.chosen_score - pair.rejected_score)


def test_yes_no_pairing_uses_judge_labels_and_drops_unanimous_prompts():
    assert YesNoPairing()(_pool([0.9, 0.8]), torch.Generator()) == []
    assert YesNoPairing()(_pool([0.1, 0.2]), torch.Generator()) == []
    (pair,) = YesNoPairing()(_pool([0.1, 0.9], labels=[True, False]), torch.Generator())  # labels win over scores
    assert (pair.meta["chosen_index"], pair.meta["rejected_index"]) == (0, 1)
    pairs = YesNoPairing(pairs_per_prompt=5)(_pool([0.9, 0.8, 0.1]), torch.Generator())
    assert len(pairs) == 1  # only one "no" image: no reuse


def test_yes_no_pairing_with_reuse_draws_distinct_combinations():
    pool = _pool([0.9, 0.8, 0.1, 0.2, 0.3])  # 2 yes x 3 no
    every = YesNoPairing(pairs_per_prompt=100, reuse=True)(pool, torch.Generator().manual_seed(0))
    combos = {(p.meta["chosen_index"], p.meta["rejected_index"]) for p in every}
    assert len(every) == 6 and combos == {(c, r) for c in (0, 1) for r in (2, 3, 4)}
    capped = YesNoPairing(pairs_per_prompt=4, reuse=True)(pool, torch.Generator().manual_seed(0))
    assert len({(p.meta["chosen_index"], p.meta["rejected_index"]) for p in capped}) == 4
    assert len(YesNoPairing(pairs_per_prompt=4)(pool, torch.Generator().manual_seed(0))) == 2  # no reuse: 2 yes
    assert YesNoPairing(pairs_per_prompt=8, reuse=True)(_pool([0.9, 0.8]), torch.Generator()) == []
    with pytest.raises(ValueError, match="pairs_per_prompt"):
        YesNoPairing(pairs_per_prompt=0)


def test_best_worst_pairing_with_min_margin():
    (pair,) = BestWorstPairing()(_pool([0.3, 0.9, 0.1]), torch.Generator())
    assert (pair.meta["chosen_index"], pair.meta["rejected_index"]) == (1, 2)
    assert BestWorstPairing(min_margin=0.9)(_pool([0.3, 0.9, 0.1]), torch.Generator()) == []
    assert BestWorstPairing()(_pool([0.5, 0.5]), torch.Generator()) == []


def _write(tmp_path, rows):
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


GOOD = {"prompt": "a cat", "chosen": [0, 1, 2, 3], "rejected": [7, 6, 5, 4]}


def test_round_trip(tmp_path):
    pairs = [PreferencePair("a cat", [0, 1, 2, 3], [7, 6, 5, 4], 0.9, 0.1, {"k": 1}), PreferencePair("b", [1] * 4, [2] * 4)]
    path = save_pairs(tmp_path / "p.jsonl", pairs)
    assert load_pairs(path, LAYOUT) == pairs
    assert pairs_hash(pairs) == pairs_hash(load_pairs(path, LAYOUT))
    assert pairs_hash(pairs) != pairs_hash(pairs[::-1])


@pytest.mark.parametrize("bad, message", [
    ("{not json", "not valid JSON"),
    ({"prompt": "a", "chosen": [0, 1, 2, 3]}, r"missing field\(s\) \['rejected'\]"),
    ({**GOOD, "chosen": [0, 1, 2]}, "'chosen' has 3 tokens, the model expects 4"),
    ({**GOOD, "rejected": [0, 1, 2, 8]}, r"'rejected' holds codes \[8\] outside \[0, 8\)"),
    ({**GOOD, "prompt": 3}, "'prompt' must be a string"),
    ({**GOOD, "chosen_score": "high"}, "'chosen_score' must be a number"),
    ({**GOOD, "extra": 1}, "unknown field"),
])
def test_validation_names_file_line_and_field(tmp_path, bad, message):
    path = _write(tmp_path, [GOOD, GOOD, bad])
    with pytest.raises(ValueError, match=message) as err:
        load_pairs(path, LAYOUT)
    assert f"{path}:3" in str(err.value)


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        load_pairs(tmp_path / "nope.jsonl", LAYOUT)
    with pytest.raises(ValueError, match="no preference pairs"):
        load_pairs(_write(tmp_path, []), LAYOUT)


def test_epoch_order_is_a_seeded_permutation():
    a, b = epoch_order(10, 0, seed=1), epoch_order(10, 1, seed=1)
    assert sorted(a) == list(range(10)) and a != b and a == epoch_order(10, 0, seed=1)
    assert epoch_order(5, 3, seed=1, shuffle=False) == [0, 1, 2, 3, 4]


def test_two_processes_see_disjoint_shards_covering_the_global_batches():
    order = epoch_order(23, 0, seed=0)
    kw = dict(world_size=2, per_device_batch_size=3, gradient_accumulation_steps=2)
    r0, r1 = shard_batches(order, rank=0, **kw), shard_batches(order, rank=1, **kw)
    assert len(r0) == len(r1) == 23 // 12
    for s in range(len(r0)):
        seen0 = [i for micro in r0[s] for i in micro]
        seen1 = [i for micro in r1[s] for i in micro]
        assert not set(seen0) & set(seen1)
        assert sorted(seen0 + seen1) == sorted(order[s * 12:(s + 1) * 12])


def test_accumulation_split_sees_the_same_pairs_per_update():
    order = list(range(8))
    acc = shard_batches(order, rank=0, world_size=1, per_device_batch_size=1, gradient_accumulation_steps=4)
    big = shard_batches(order, rank=0, world_size=1, per_device_batch_size=4, gradient_accumulation_steps=1)
    assert [[i for m in step for i in m] for step in acc] == [step[0] for step in big] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    with pytest.raises(ValueError, match="rank"):
        shard_batches(order, rank=2, world_size=2, per_device_batch_size=1, gradient_accumulation_steps=1)
