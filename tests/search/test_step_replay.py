"""PARM's pruning replayed from per-step records (search/step_replay.py): the paper's procedure (first clear step,
potential there, best final answer among survivors, lowest P("no") when none survives) and pruning by a flag, with
the generator forward passes the live search spends."""
from __future__ import annotations

import pytest

from search.step_replay import JudgeSteps, StepRecord, parm_pick, prune_pick

S = 6  # steps per path


def _path(clarity, potential, final, verdict=None):
    no = [None if p is None else 1.0 - p for p in potential]  # the raw P("no") of a judge whose yes + no = 1
    return StepRecord(verdict or [False] * S, {"j": JudgeSteps(clarity, potential, no, final)})


def _steps(**values):
    out = [None] * S
    for step, value in values.items():
        out[int(step[1:])] = value
    return out


def test_parm_keeps_paths_with_potential_and_picks_the_best_final_answer():
    paths = [
        _path(_steps(s0=0.1, s1=0.2, s2=0.9, s3=0.9), _steps(s2=0.3, s3=0.9), final=0.99),  # clear at 2, no potential
        _path(_steps(s0=0.2, s1=0.8, s2=0.9), _steps(s1=0.9, s2=0.1), final=0.4),          # clear at 1, potential
        _path([0.1] * S, [None] * S, final=0.95),                                          # never clear
        _path(_steps(s0=0.7), _steps(s0=0.6), final=0.7),                                  # clear at 0, potential
    ]
    assert parm_pick(paths, "j") == (3, 3 + S + S + S)  # path 0 stops after step 3 (1-based), the others run on
    # clarity asked from step 2: path 1 is first clear at step 2 (no potential there), path 3 is never clear
    # no survivor: the lowest P("no") is path 0 (0.7), stopped after step 3 and resumed for its last S - 3 steps
    assert parm_pick(paths, "j", clarity_from=2) == (0, 3 + 3 + S + S + (S - 3))


def test_parm_fallback_is_the_lowest_p_no_and_is_resumed_when_it_was_stopped():
    paths = [_path(_steps(s1=0.9), _steps(s1=0.2), final=0.9), _path(_steps(s2=0.9), _steps(s2=0.4), final=0.1)]
    assert parm_pick(paths, "j") == (1, 2 + 3 + (S - 3))  # both stopped; path 1 (P("no") 0.6 < 0.8) resumed
    never = [_path([0.0] * S, [None] * S, final=0.5), _path([0.0] * S, [None] * S, final=0.9)]
    assert parm_pick(never, "j") == (0, 2 * S)  # never clear: P("no") = 1 for both, the first; nothing to redo


def test_a_clear_step_without_a_recorded_potential_is_an_error():
    with pytest.raises(ValueError, match="path 0 is clear at step 1 but its potential was not recorded"):
        parm_pick([_path(_steps(s1=0.9), [None] * S, final=0.5)], "j")
    with pytest.raises(ValueError, match="no paths"):
        parm_pick([], "j")


def test_prune_pick_counts_stopped_paths_and_falls_back_to_every_path():
    assert prune_pick([True, False, True], [0.2, 0.9, 0.5], step=2, num_steps=S) == (2, 2 * S + 3)
    assert prune_pick([False, False], [0.2, 0.9], step=2, num_steps=S) == (1, 2 * 3 + (S - 3))  # pick resumed
    assert prune_pick([False, False], [0.2, 0.9], step=S - 1, num_steps=S) == (1, 2 * S)  # nothing left to redo
    with pytest.raises(ValueError, match="step 6 outside"):
        prune_pick([True], [0.1], step=S, num_steps=S)
    with pytest.raises(ValueError, match="2 keep flags for 1 scores"):
        prune_pick([True, False], [0.1], step=0, num_steps=S)
