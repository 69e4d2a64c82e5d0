"""eval.stats: the GenEval macro-average and the paired two-stage bootstrap, on cases worked out by hand."""
from __future__ import annotations

import numpy as np
import pytest

from eval.stats import best_of_n_slots, geneval_score, paired_bootstrap, prompt_units, slot_verdicts


def test_macro_average_over_tasks():
    # task a: 1 of 2 images correct (0.5); task b: 1 of 1 (1.0) -> (0.5 + 1.0) / 2, not 2 of 3
    verdicts = {(0, 0): ("a", True), (0, 1): ("a", False), (1, 0): ("b", True)}
    assert geneval_score(verdicts) == pytest.approx(0.75)


def test_slot_verdicts_from_results_records():
    records = [{"filename": "/x/images/00012/samples/0003.png", "tag": "colors", "correct": True}]
    assert slot_verdicts(records) == {(12, 3): ("colors", True)}


def test_identical_and_opposite_rows_have_degenerate_intervals():
    base = {(p, k): ("t", bool((p + k) % 2)) for p in range(4) for k in range(3)}
    same = paired_bootstrap(base, base, replicates=200)
    assert (same.estimate, same.low, same.high) == (0.0, 0.0, 0.0)
    wrong = {s: (t, False) for s, (t, _) in base.items()}
    right = {s: (t, True) for s, (t, _) in base.items()}
    flip = paired_bootstrap(wrong, right, replicates=200)
    assert (flip.estimate, flip.low, flip.high) == (1.0, 1.0, 1.0)


def test_single_prompt_varies_through_its_images():
    # one task, one prompt, two slots: baseline (no, no), method (yes, no) -> estimate 0.5. A replicate draws the two
    # slots with replacement: the difference is 0 (both draws slot 1), 1 (both slot 0) or 0.5, with probabilities
    # 1/4, 1/4, 1/2, so the 95% interval is [0, 1] and the replicates average 0.5.
    base = {(0, 0): ("t", False), (0, 1): ("t", False)}
    method = {(0, 0): ("t", True), (0, 1): ("t", False)}
    out = paired_bootstrap(base, method, replicates=4000, seed=1)
    assert out.estimate == 0.5 and (out.low, out.high) == (0.0, 1.0) and out.half_width == 0.5


def test_interval_shrinks_with_more_slots_and_is_seeded():
    rng = np.random.default_rng(0)
    def rows(n):
        base = {(p, k): ("t" if p % 2 else "u", bool(rng.random() < 0.4)) for p in range(n) for k in range(4)}
        method = {s: (t, c or bool(rng.random() < 0.2)) for s, (t, c) in base.items()}
        return base, method
    small, large = paired_bootstrap(*rows(6)), paired_bootstrap(*rows(60))
    assert large.half_width < small.half_width
    a, b = rows(10)
    assert paired_bootstrap(a, b, seed=3) == paired_bootstrap(a, b, seed=3)


def test_rows_must_judge_the_same_slots():
    with pytest.raises(ValueError, match="different slots"):
        paired_bootstrap({(0, 0): ("t", True)}, {(0, 1): ("t", True)})


def _record(prompt: int, sample: int, tag: str, correct: bool) -> dict:
    return {"filename": f"run/images/{prompt:05d}/samples/{sample:04d}.png", "tag": tag, "correct": correct}


def test_best_of_n_slots_replays_the_pick_per_chunk_by_hand():
    # prompt 0 (colors): 8 images = chunks (0, 0) and (0, 1); prompt 1 (counting): 5 images, the 5th is dropped
    correct = [False, True, False, True, True, False, False, False] + [True, False, False, False, True]
    scores = [0.1, 0.9, 0.5, 0.9, 0.2, 0.7, 0.7, 0.1] + [0.3, 0.8, 0.1, 0.2, 1.0]
    records = ([_record(0, k, "colors", c) for k, c in enumerate(correct[:8])]
               + [_record(1, k, "counting", c) for k, c in enumerate(correct[8:])])
    baseline, picked, oracle = best_of_n_slots(records, scores, 4)
    assert sorted(baseline) == [(0, 0), (0, 1), (1, 0)]
    assert baseline == {(0, 0): ("colors", False), (0, 1): ("colors", True), (1, 0): ("counting", True)}
    # (0, 0): 0.9 twice -> the first (sample 1, accepted); (0, 1): 0.7 twice -> sample 5 (rejected);
    # (1, 0): 0.8 -> sample 1 (rejected)
    assert picked == {(0, 0): ("colors", True), (0, 1): ("colors", False), (1, 0): ("counting", False)}
    assert oracle == {(0, 0): ("colors", True), (0, 1): ("colors", True), (1, 0): ("counting", True)}
    with pytest.raises(ValueError, match="2 scores for 13"):
        best_of_n_slots(records, scores[:2], 4)


def test_repeated_lines_of_one_prompt_are_one_prompt():
    # prompt "x" written as lines 0 and 1 (2 images each), prompt "y" as line 2 (4 images): with units the bootstrap
    # is the one over the merged slots, (0, 0..3) for "x" and (2, 0..3) for "y", replicate for replicate
    rng = np.random.default_rng(3)
    base = {(i, k): ("t", bool(rng.integers(2))) for i in (0, 1) for k in (0, 1)}
    base |= {(2, k): ("t", bool(rng.integers(2))) for k in range(4)}
    method = {s: ("t", bool(rng.integers(2))) for s in base}
    merged = {(0 if i < 2 else 2, k + 2 * i if i < 2 else k): v for (i, k), v in base.items()}
    merged_method = {(0 if i < 2 else 2, k + 2 * i if i < 2 else k): v for (i, k), v in method.items()}
    units = {0: "x", 1: "x", 2: "y"}
    grouped = paired_bootstrap(base, method, replicates=300, seed=5, units=units)
    assert grouped == paired_bootstrap(merged, merged_method, replicates=300, seed=5)
    # ... and not the bootstrap that counts line 1 as a third prompt
    assert grouped != paired_bootstrap(base, method, replicates=300, seed=5)
    with pytest.raises(ValueError, match=r"no prompt for prompt indices \[2\]"):
        paired_bootstrap(base, method, replicates=10, units={0: "x", 1: "x"})


def test_prompt_units_read_the_prompt_of_each_line_from_its_records():
    # lines 0 and 1 are one prompt written twice (the balanced eval), line 2 another
    records = [_record(i, k, "colors", True) | {"prompt": p} for i, p in enumerate(["a x", "a x", "a y"])
               for k in range(2)]
    assert prompt_units(records) == {0: "a x", 1: "a x", 2: "a y"}
