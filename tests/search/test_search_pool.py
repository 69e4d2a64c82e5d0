"""Generate once, select many: a stored pool re-scored by a policy picks what a fresh run of the strategy picks."""
from __future__ import annotations

import json

import pytest
import torch

from reward_models.orm import ORM
from reward_models.parm import Parm
from reward_models.tiny import ScriptedYesNoJudge
from search.base import Slot
from search.best_of_n import BestOfN
from search.parm import ParmSearch
from search.pool import (FirstPolicy, OrmPolicy, ParmPolicy, PoolBuilder, PrmBeamPolicy, RandomPolicy, build_pool_entry,
                         load_entry, load_pool, save_entry)
from search.step_level import StepLevelSearch
from tests.search.search_doubles import (CandidateIndex, HashProcessJudge, ParmTable, hash_parm_answer, reference_run,
                                         tiny_bundle)

S, N = 6, 6
SLOT = Slot("a blue square", prompt_index=5, sample_index=0, seed=11)
SAMPLING = {"guidance_scale": 1.75, "num_inference_steps": S}
SCORES = [0.2, 0.4, 0.95, 0.1, 0.6, 0.8]
TABLES = {
    "mixed": dict(clear_at=[2, 1, 3, 0, None, 1], potential=[True, False, False, True, True, True]),
    "all_pruned": dict(clear_at=[2, 1, 3, 0, 1, 1], potential=[False] * N),
}
P_NO = [0.5, 0.3, 0.7, 0.35, 0.9, 0.6]


@pytest.fixture(scope="module")
def world():
    pipe = tiny_bundle().pipeline()
    final, predicted = reference_run(pipe, SLOT, N, S)
    return pipe, final, CandidateIndex(pipe, predicted)


def _orm(index):
    return ORM(ScriptedYesNoJudge(lambda conv, image: (SCORES[index(image)], 0.0, "yes")))


def _parm(index, table):
    return Parm(ParmTable(index, p_no=P_NO, score=SCORES, **TABLES[table]).judge())


@pytest.fixture(scope="module", params=sorted(TABLES))
def pool(world, request, tmp_path_factory):
    pipe, _, index = world
    entry = build_pool_entry(pipe, SLOT, SAMPLING, N, outcome_judge=_orm(index), process_judge=HashProcessJudge(),
                             parm=_parm(index, request.param))
    path = save_entry(tmp_path_factory.mktemp("pool"), entry)
    return request.param, entry, path


def test_pool_round_trips_through_json(world, pool):
    _, final, _ = world
    _, entry, path = pool
    loaded = load_entry(path)
    assert torch.equal(loaded.tokens, final) and loaded.seeds == entry.seeds
    assert loaded.to_json() == json.loads(path.read_text())
    assert [e.slot for e in load_pool(path.parent)] == [SLOT]
    assert entry.cost["generator_forward_passes"] == N * S  # a pool decodes every path to the end


@pytest.mark.parametrize("n", [1, 3, 6])
def test_orm_policy_matches_a_fresh_best_of_n(world, pool, n):
    pipe, _, index = world
    pick = OrmPolicy(n).select(pool[1])
    fresh = BestOfN(_orm(index), num_candidates=n).search(pipe, SLOT, SAMPLING)
    assert (pick.index, pick.forward_passes) == (fresh.chosen, fresh.cost.generator_forward_passes)


@pytest.mark.parametrize("n", [2, 4, 6])
def test_parm_policy_matches_a_fresh_parm_search(world, pool, n):
    pipe, _, index = world
    table, entry, _ = pool
    pick = ParmPolicy(n).select(entry)
    fresh = ParmSearch(_parm(index, table), num_candidates=n).search(pipe, SLOT, SAMPLING)
    assert (pick.index, pick.forward_passes) == (fresh.chosen, fresh.cost.generator_forward_passes)


def test_parm_policy_hand_checked(pool):
    table, entry, _ = pool
    # mixed: survivors 0, 3, 5 (candidate 4 is never clear) -> best selection score 0.8 is candidate 5;
    # all_pruned: fallback = lowest P("no") = candidate 1 (0.3)
    assert ParmPolicy(6).select(entry).index == {"mixed": 5, "all_pruned": 1}[table]


@pytest.mark.parametrize("keep,schedule", [(2, (1,)), ((4, 2), (0, 3)), (1, (2,))])
def test_prm_beam_policy_matches_a_fresh_pruning_search(world, pool, keep, schedule):
    pipe, _, _ = world
    pick = PrmBeamPolicy(N, keep, schedule).select(pool[1])
    fresh = StepLevelSearch(HashProcessJudge(), num_paths=N, keep=keep if isinstance(keep, int) else list(keep),
                            expansion=1, schedule=list(schedule)).search(pipe, SLOT, SAMPLING)
    assert (pick.index, pick.forward_passes) == (fresh.chosen, fresh.cost.generator_forward_passes)


def test_first_and_random_policies(pool):
    entry = pool[1]
    assert FirstPolicy().select(entry).index == 0
    picks = {RandomPolicy(6, seed=s).select(entry).index for s in range(40)}
    assert picks <= set(range(6)) and len(picks) > 1
    assert RandomPolicy(6, seed=3).select(entry) == RandomPolicy(6, seed=3).select(entry)


def test_policies_reject_bad_n_and_missing_scores(pool):
    entry = pool[1]
    with pytest.raises(ValueError, match="1 <= N <= 6"):
        OrmPolicy(7).select(entry)
    bare = type(entry)(slot=entry.slot, num_steps=S, seeds=entry.seeds, tokens=entry.tokens)
    with pytest.raises(ValueError, match="no PARM records"):
        ParmPolicy(3).select(bare)


def test_pool_builder_strategy_stores_the_entry_and_picks_by_policy(world, pool):
    pipe, final, index = world
    result = PoolBuilder(num_candidates=N, outcome_judge=_orm(index), batch_size=4).search(pipe, SLOT, SAMPLING)
    entry = result.extras["pool_entry"]
    assert torch.equal(entry.tokens, final) and entry.outcome_scores == pytest.approx(SCORES)
    assert result.chosen == OrmPolicy(N).select(pool[1]).index == 2
    assert result.cost.generator_forward_passes == N * S


def test_pool_builder_search_many_is_search_slot_by_slot(world):
    # three slots of two prompts, 4 paths each in chunks of 5 rows: each slot's entry (tokens, every judge's scores,
    # PARM records, cost) and pick are those of building it alone
    pipe = world[0]

    def builder(batch_size):
        return PoolBuilder(num_candidates=4, outcome_judge=ORM(ScriptedYesNoJudge(hash_parm_answer)),
                           process_judge=HashProcessJudge(), parm=Parm(ScriptedYesNoJudge(hash_parm_answer)),
                           process_steps=[1, 3], batch_size=batch_size)

    slots = [SLOT, Slot("a red circle", prompt_index=2, sample_index=1, seed=11),
             Slot("a blue square", prompt_index=5, sample_index=3, seed=11)]
    assert builder(5).slots_per_call == 1 and builder(16).slots_per_call == 4
    together = builder(5).search_many(pipe, slots, SAMPLING)
    for slot, many in zip(slots, together):
        alone = builder(4).search(pipe, slot, SAMPLING)
        assert many.to_json() == alone.to_json()
        assert many.extras["pool_entry"].to_json() == alone.extras["pool_entry"].to_json()
    assert together[0].extras["pool_entry"].to_json() != together[1].extras["pool_entry"].to_json()


def test_named_parm_records_are_the_records_of_that_parm(world, pool, tmp_path):
    """``parms={name: parm}``: a pool stores more PARMs' per-path records by name, each the records that PARM makes as
    the pool's own PARM (same decisions, same passes); they round-trip through JSON and ``ParmPolicy(n, name)``
    reads them."""
    pipe, _, index = world
    table, entry, _ = pool
    other = "all_pruned" if table == "mixed" else "mixed"
    both = build_pool_entry(pipe, SLOT, SAMPLING, N, parm=_parm(index, other), parms={"theirs": _parm(index, table)})
    assert both.named_parm["theirs"] == entry.parm and both.parm != entry.parm
    alone = build_pool_entry(pipe, SLOT, SAMPLING, N, parm=_parm(index, other)).cost
    judged = {k: v for k, v in both.cost.items() if k != "decoded_images"}  # their questions are not counted; every
    assert judged == {k: v for k, v in alone.items() if k != "decoded_images"}  # image decoded for them is
    assert both.cost["decoded_images"] >= alone["decoded_images"]
    loaded = load_entry(save_entry(tmp_path, both))
    assert loaded.named_parm == both.named_parm and loaded.to_json() == both.to_json()
    for n in (2, 6):
        assert ParmPolicy(n, "theirs").select(loaded) == ParmPolicy(n).select(entry)
    with pytest.raises(ValueError, match="no records of PARM 'nope'"):
        ParmPolicy(3, "nope").select(loaded)
