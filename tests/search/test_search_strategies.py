"""Search strategies on a tiny Show-o with scripted judges (acceptance items of the search issue)."""
from __future__ import annotations

import json

import pytest
import torch

from common.seeding import image_seed
from reward_models.orm import ORM
from reward_models.parm import Parm
from reward_models.parmpp import ParmPlusPlus
from reward_models.tiny import ScriptedYesNoJudge
from search.base import Slot
from search.best_of_n import BestOfN
from search.parm import ParmSearch, saved_forward_passes
from search.reflect import ParmPlusPlusSearch
from search.seeds import candidate_generators, candidate_seed, reflection_seed
from showo.self_correction import SelfCorrectionFormat
from search.step_level import StepLevelSearch
from tests.helpers import assert_same_image
from tests.search.search_doubles import (REFLECTION_QUESTION, CandidateIndex, HashProcessJudge, ParmTable,
                                         hash_parm_answer, image_hash_score, reference_run, tiny_bundle)

S, N = 6, 6
SLOT = Slot("a red circle", prompt_index=3, sample_index=1, seed=7)
SAMPLING = {"guidance_scale": 1.75, "num_inference_steps": S}
SCORES = [0.3, 0.9, 0.5, 0.2, 0.7, 0.1]


@pytest.fixture(scope="module")
def world():
    bundle = tiny_bundle()
    pipe = bundle.pipeline()
    final, predicted = reference_run(pipe, SLOT, N, S)
    return pipe, final, predicted, CandidateIndex(pipe, predicted)


def test_candidate_zero_is_the_baseline_seed_and_seeds_differ():
    assert candidate_seed(7, 3, 1, 0) == image_seed(7, 3, 1)
    seeds = {candidate_seed(7, p, s, c) for p in range(3) for s in range(2) for c in range(20)}
    assert len(seeds) == 3 * 2 * 20


def test_best_of_n_picks_the_argmax_and_counts_costs(world):
    pipe, final, _, index = world
    orm = ORM(ScriptedYesNoJudge(lambda conv, image: (SCORES[index(image)], 0.0, "yes")))
    result = BestOfN(orm, num_candidates=N, batch_size=4).search(pipe, SLOT, SAMPLING)
    assert result.chosen == 1  # argmax of SCORES
    assert [c.score for c in result.candidates] == pytest.approx(SCORES)
    assert all(torch.equal(c.tokens, final[c.index]) for c in result.candidates)
    assert [c.seed for c in result.candidates] == [SLOT.candidate_seed(i) for i in range(N)]
    assert result.cost.generator_forward_passes == N * S
    assert (result.cost.judge_calls, result.cost.judge_images) == (1, N)
    assert_same_image(result.image, pipe.decode(final[1:2], "pil")[0], "chosen image")


def test_best_of_n_ties_go_to_the_lowest_index(world):
    pipe, _, _, _ = world
    orm = ORM(ScriptedYesNoJudge(lambda conv, image: (0.5, 0.5, "yes")))
    assert BestOfN(orm, num_candidates=3).search(pipe, SLOT, SAMPLING).chosen == 0


@pytest.mark.parametrize("num_candidates,batch_size", [(6, 6), (6, 1), (6, 4), (3, 2), (9, 5)])
def test_candidate_identity_does_not_depend_on_batching_or_n(world, num_candidates, batch_size):
    pipe, final, _, _ = world
    result = BestOfN(None, num_candidates=num_candidates, batch_size=batch_size).search(pipe, SLOT, SAMPLING)
    for c in result.candidates[: min(num_candidates, N)]:
        assert torch.equal(c.tokens, final[c.index]), f"candidate {c.index} changed with N={num_candidates}, batch={batch_size}"


def test_search_many_is_search_slot_by_slot(world):
    # three slots of two prompts decoded together, their 9 rows in chunks of 4 (across slot boundaries): every slot's
    # candidates, scores, pick, image and cost are those of searching it alone
    pipe = world[0]
    judge = ORM(ScriptedYesNoJudge(lambda conv, image: (image_hash_score(image), 0.0, "yes")))
    slots = [SLOT, Slot("a blue square", prompt_index=4, sample_index=0, seed=7),
             Slot("a red circle", prompt_index=3, sample_index=2, seed=7)]
    strategy = BestOfN(judge, num_candidates=3, batch_size=4)
    assert strategy.slots_per_call == 1 and BestOfN(judge, num_candidates=3, batch_size=6).slots_per_call == 2
    together = strategy.search_many(pipe, slots, SAMPLING)
    assert len(together) == 3
    for slot, many in zip(slots, together):
        alone = strategy.search(pipe, slot, SAMPLING)
        assert many.slot == slot and many.chosen == alone.chosen
        assert many.to_json() == alone.to_json()
        assert_same_image(many.image, alone.image, f"slot {slot}")
    assert together[0].cost.generator_forward_passes == 3 * S
    assert together[0].to_json()["candidates"] != together[1].to_json()["candidates"]


def _hash_parm_judge():
    return ScriptedYesNoJudge(hash_parm_answer, explain_fn=lambda conv, image: "the color is wrong")


def test_parm_search_many_is_search_slot_by_slot(world):
    # three slots of two prompts, 4 paths each in chunks of 5 rows (across slot boundaries), pruned paths leaving the
    # batch as they go: every slot's decisions, pick, image and cost are those of searching it alone
    pipe = world[0]
    slots = [SLOT, Slot("a blue square", prompt_index=4, sample_index=0, seed=7),
             Slot("a red circle", prompt_index=3, sample_index=2, seed=7),
             Slot("a blue square", prompt_index=4, sample_index=3, seed=11)]
    strategy = ParmSearch(Parm(_hash_parm_judge()), num_candidates=4, batch_size=5)
    assert strategy.slots_per_call == 1 and ParmSearch(Parm(_hash_parm_judge()), 4, 16).slots_per_call == 4
    together = strategy.search_many(pipe, slots, SAMPLING)
    actions = [e.action for r in together for e in r.trace]
    # the cases that matter: rows leaving a shared batch, and a slot whose every path is pruned (the fallback resumed
    # from its parked row while the other slots decode on)
    assert "prune" in actions and "complete" in actions
    for slot, many in zip(slots, together):
        alone = ParmSearch(Parm(_hash_parm_judge()), num_candidates=4, batch_size=4).search(pipe, slot, SAMPLING)
        assert many.slot == slot and many.to_json() == alone.to_json()
        assert_same_image(many.image, alone.image, f"slot {slot}")
    assert len({json.dumps(r.to_json()["candidates"]) for r in together}) == len(slots)


def _parm_table(index, **kw):
    args = dict(clear_at=[1, 2, None, 0, 3, 2], potential=[True, False, True, False, True, False],
                p_no=[0.1, 0.2, 0.3, 0.4, 0.5, 0.6], score=SCORES)
    args.update(kw)
    return ParmTable(index, **args)


def test_parm_stops_pruned_paths_and_saves_what_the_trace_implies(world):
    pipe, final, _, index = world
    table = _parm_table(index)
    result = ParmSearch(Parm(table.judge()), num_candidates=N, batch_size=4).search(pipe, SLOT, SAMPLING)
    # candidates 1, 3, 5 are clear at steps 2, 0, 2 without potential: pruned right there
    assert [c.stopped_step for c in result.candidates] == [None, 2, None, 0, None, 2]
    assert [c.index for c in result.candidates if c.tokens is None] == [1, 3, 5]
    for c in result.candidates:
        if c.tokens is not None:
            assert torch.equal(c.tokens, final[c.index])
    saved = saved_forward_passes(result)
    assert saved == (S - 1 - 2) * 2 + (S - 1 - 0)
    assert result.cost.generator_forward_passes == N * S - saved
    # after its potential judgment a pruned path is never shown to the judge again
    for i in (1, 3, 5):
        kinds = [k for k, c in table.asked if c == i]
        assert kinds == ["clarity"] * (table.clear_at[i] + 1) + ["potential"]
    # survivors with potential: 0 (0.3) and 4 (0.7); 2 is never clear, so it has none
    assert result.chosen == 4
    assert [c.info["potential"] for c in result.candidates] == [True, False, False, False, True, False]
    assert result.candidates[2].info["p_no"] == 1.0


def test_parm_with_every_path_pruned_takes_the_reference_fallback(world):
    pipe, final, _, index = world
    p_no = [0.6, 0.5, 0.2, 0.9, 0.4, 0.3]
    table = _parm_table(index, clear_at=[0, 1, 1, 0, 2, 1], potential=[False] * N, p_no=p_no)
    result = ParmSearch(Parm(table.judge()), num_candidates=N, batch_size=N).search(pipe, SLOT, SAMPLING)
    assert result.chosen == 2  # the lowest potential-assessment P("no")
    assert [e.detail["rule"] for e in result.trace if e.action == "select"] == ["fallback_min_p_no"]
    assert torch.equal(result.tokens, final[2])  # resumed where it was pruned: the same path as never stopped
    saved = saved_forward_passes(result)
    assert saved == sum(S - 1 - s for s in table.clear_at)
    left = S - 1 - table.clear_at[2]  # the steps the winner had left when it was pruned
    assert result.cost.generator_forward_passes == N * S - saved + left
    assert [e.detail["forward_passes"] for e in result.trace if e.action == "complete"] == [left]
    assert not [k for k, _ in table.asked if k == "select"]


def test_parm_without_truncation_decodes_every_path(world):
    pipe, final, _, index = world
    result = ParmSearch(Parm(_parm_table(index).judge(), truncate=False), num_candidates=N).search(pipe, SLOT, SAMPLING)
    assert result.cost.generator_forward_passes == N * S and saved_forward_passes(result) == 0
    assert all(torch.equal(c.tokens, final[c.index]) for c in result.candidates)
    assert result.chosen == 4


@pytest.mark.parametrize("yes_at,reflections,corrections", [(1, 1, 0), (2, 2, 1), (None, 3, 3)])
def test_parmpp_stops_when_the_judge_says_yes_and_after_three_rounds(world, yes_at, reflections, corrections):
    pipe, _, _, index = world
    table = _parm_table(index, reflect_yes_at=yes_at)
    parmpp = ParmPlusPlus(Parm(table.judge()), reflection_question=REFLECTION_QUESTION, max_reflections=3)
    result = ParmPlusPlusSearch(parmpp, num_candidates=N, max_feedback_length=4).search(pipe, SLOT, SAMPLING)
    assert table.reflections == reflections
    rounds = [c for c in result.candidates if c.round > 0]
    assert [c.round for c in rounds] == list(range(1, corrections + 1))
    assert result.chosen == (4 if corrections == 0 else rounds[-1].index)
    if corrections:
        assert rounds[0].parent == 4 and rounds[0].info["feedback"] == "the color is wrong"
        # round 1 = the self-correction pipeline on (prompt, feedback, PARM's pick), seeded per round
        fmt = SelfCorrectionFormat(pipe.layout, max_feedback_length=4)
        prompt_ids, feedback_ids = pipe.prompting.tokenize([SLOT.prompt, "the color is wrong"])
        seq = fmt.build([prompt_ids], [feedback_ids], result.candidates[4].tokens[None])
        gen = candidate_generators([reflection_seed(SLOT.seed, SLOT.prompt_index, SLOT.sample_index, 1)])
        direct = fmt.pipeline(pipe)(input_ids=seq, num_inference_steps=S, generator=gen, output_type="tokens").tokens
        assert torch.equal(rounds[0].tokens, direct[0])
        assert_same_image(result.image, pipe.decode(rounds[-1].tokens[None], "pil")[0], "corrected image")
    parm_passes = N * S - saved_forward_passes(result)
    assert result.cost.generator_forward_passes == parm_passes + corrections * S
    assert [e.action for e in result.trace].count("correct") == corrections


@pytest.mark.parametrize("p_yes,chosen_round", [([0.3, 0.45, 0.2], 1), ([0.4, 0.2, 0.4], 0), ([0.1, 0.2, 0.3], 2)])
def test_parmpp_without_a_yes_can_end_with_the_loops_best_image(world, p_yes, chosen_round):
    """``if_never_accepted="best"``: after two rounds of "no", the last correction is judged too (the reflection
    question, no explanation) and the loop ends with its image of highest P("yes"), ties to the earlier one."""
    pipe, _, _, index = world
    tables = {}

    def search(rule):  # a fresh scripted table per search (it counts what it was asked)
        tables[rule] = table = _parm_table(index, reflect_yes_at=None)
        table.reflect_p_yes = p_yes
        parmpp = ParmPlusPlus(Parm(table.judge()), reflection_question=REFLECTION_QUESTION, max_reflections=2)
        return ParmPlusPlusSearch(parmpp, num_candidates=N, max_feedback_length=4,
                                  if_never_accepted=rule).search(pipe, SLOT, SAMPLING)

    last, best = search("last"), search("best")
    assert (tables["last"].reflections, tables["best"].reflections) == (2, 3)  # + the last correction judged
    rounds = [4] + [c.index for c in best.candidates if c.round > 0]
    assert [c.tokens is None or c.tokens.tolist() for c in best.candidates] == \
        [c.tokens is None or c.tokens.tolist() for c in last.candidates]  # the same loop
    assert last.chosen == rounds[-1] and best.chosen == rounds[chosen_round]
    assert_same_image(best.image, pipe.decode(best.candidates[best.chosen].tokens[None], "pil")[0], "kept image")
    select = best.trace[-1]
    assert select.action == "select" and select.detail["p_yes"] == pytest.approx(p_yes)
    assert best.cost.judge_calls == last.cost.judge_calls + 1
    assert best.cost.generator_forward_passes == last.cost.generator_forward_passes


def test_parmpp_best_changes_nothing_once_a_reflection_says_yes(world):
    pipe, _, _, index = world
    results = []
    for rule in ("last", "best"):
        table = _parm_table(index, reflect_yes_at=2)
        parmpp = ParmPlusPlus(Parm(table.judge()), reflection_question=REFLECTION_QUESTION, max_reflections=3)
        results.append(ParmPlusPlusSearch(parmpp, num_candidates=N, max_feedback_length=4,
                                          if_never_accepted=rule).search(pipe, SLOT, SAMPLING))
    assert results[0].to_json() == results[1].to_json()
    with pytest.raises(ValueError, match="if_never_accepted"):
        ParmPlusPlusSearch(parmpp, if_never_accepted="first")


def test_step_level_beam_keeps_the_best_and_branches(world):
    pipe, final, _, _ = world
    judge = HashProcessJudge()
    strategy = StepLevelSearch(judge, num_paths=4, keep=2, expansion=3, schedule=[1, 3])
    result = strategy.search(pipe, SLOT, SAMPLING)
    keeps = [e for e in result.trace if e.action == "keep"]
    scored = [e for e in result.trace if e.action == "score"]
    for keep, score in zip(keeps, scored):
        best = sorted(zip(score.detail["scores"], score.candidates), key=lambda t: (-t[0], t[1]))[:2]
        assert keep.candidates == [c for _, c in best]
    assert judge.calls == [(1, 4), (3, 6), (S - 1, 6)]
    # 4 paths for steps 0-1, then 6 (2 kept x 3) for the remaining 4 steps
    assert result.cost.generator_forward_passes == 4 * 2 + 6 * (S - 2)
    children = [c for c in result.candidates if c.parent is not None]
    assert len(children) == 8 and all(c.seed == SLOT.candidate_seed(c.index) for c in children)
    finished = [c for c in result.candidates if c.tokens is not None]
    assert len(finished) == 6
    assert result.chosen == max(finished, key=lambda c: (c.score, -c.index)).index
    assert result.candidates[result.chosen].score == pytest.approx(image_hash_score(result.image))
    # a kept path continues with its own generator: a root kept to the end is the reference path
    for c in finished:
        if c.parent is None:
            assert torch.equal(c.tokens, final[c.index])


def test_step_level_search_many_is_search_slot_by_slot(world):
    # three slots of two prompts, 4 paths each in chunks of 5 rows (across slot boundaries), 2 kept x 3 children at
    # steps 1 and 3: every slot's beam, scores, pick, image and cost are those of searching it alone
    pipe = world[0]
    slots = [SLOT, Slot("a blue square", prompt_index=4, sample_index=0, seed=7),
             Slot("a red circle", prompt_index=3, sample_index=2, seed=7)]
    strategy = StepLevelSearch(HashProcessJudge(), num_paths=4, keep=2, expansion=3, schedule=[1, 3], batch_size=5)
    assert strategy.slots_per_call == 1
    assert StepLevelSearch(HashProcessJudge(), num_paths=4, keep=1, expansion=4, batch_size=16).slots_per_call == 4
    together = strategy.search_many(pipe, slots, SAMPLING)
    assert len(together) == 3
    for slot, many in zip(slots, together):
        alone = StepLevelSearch(HashProcessJudge(), num_paths=4, keep=2, expansion=3, schedule=[1, 3],
                                batch_size=4).search(pipe, slot, SAMPLING)
        assert many.slot == slot and many.to_json() == alone.to_json()
        assert_same_image(many.image, alone.image, f"slot {slot}")
    assert together[0].cost.generator_forward_passes == 4 * 2 + 6 * (S - 2)
    assert together[0].to_json()["candidates"] != together[1].to_json()["candidates"]


def test_step_level_rejects_a_bad_schedule(world):
    pipe = world[0]
    with pytest.raises(ValueError, match="schedule"):
        StepLevelSearch(HashProcessJudge(), schedule=[3, 1]).search(pipe, SLOT, SAMPLING)
    with pytest.raises(ValueError, match="keep has 1 entries for 2"):
        StepLevelSearch(HashProcessJudge(), keep=[1], schedule=[1, 2]).search(pipe, SLOT, SAMPLING)


def test_parm_clarity_from_decodes_and_asks_nothing_before_it(world):
    """A judge that says "no" before step 2 anyway: ``clarity_from=2`` gives the same search at 2 x N fewer decoded
    step images and clarity questions (the table counts clarity calls, so its clear steps shift by 2)."""
    pipe, final, _, index = world
    clear_at = [2, 3, None, 2, 3, 4]
    results, tables = [], []
    for k, table_clear in ((0, clear_at), (2, [None if c is None else c - 2 for c in clear_at])):
        table = _parm_table(index, clear_at=table_clear)
        results.append(ParmSearch(Parm(table.judge(), clarity_from=k), num_candidates=N, batch_size=4)
                       .search(pipe, SLOT, SAMPLING))
        tables.append(table)
    r0, r2 = results
    assert r0.chosen == r2.chosen
    assert [c.stopped_step for c in r0.candidates] == [c.stopped_step for c in r2.candidates] == \
           [None, 3, None, 2, None, 4]
    assert r0.cost.generator_forward_passes == r2.cost.generator_forward_passes
    assert r0.cost.decoded_images - r2.cost.decoded_images == 2 * N
    clarity = [sum(1 for kind, _ in t.asked if kind == "clarity") for t in tables]
    assert clarity[0] - clarity[1] == 2 * N
    for c in r2.candidates:
        if c.tokens is not None:
            assert torch.equal(c.tokens, final[c.index])


@pytest.mark.parametrize("yes_at", [2, None])
def test_parmpp_replays_its_parm_stage_from_a_pool(world, tmp_path, yes_at):
    """``pool``: PARM++'s PARM stage replayed from a pool that stored this PARM's records by name gives the live
    search's result: PARM's pick, the candidates a live stage decodes to the end, the loop, the image, the passes."""
    from search.pool import ParmPolicy, PoolBuilder, save_entry

    pipe, _, _, index = world

    def parmpp():  # a fresh scripted table per search (it counts what it was asked)
        table = _parm_table(index, reflect_yes_at=yes_at)
        return ParmPlusPlus(Parm(table.judge()), reflection_question=REFLECTION_QUESTION, max_reflections=2)

    own = Parm(_parm_table(index, potential=[False] * N).judge())  # the pool's own PARM decides otherwise
    entry = PoolBuilder(N, parm=own, parms={"pp": parmpp().parm}, batch_size=4).search(
        pipe, SLOT, SAMPLING).extras["pool_entry"]
    save_entry(tmp_path, entry)
    bare = tmp_path / "bare"  # the same slot without any PARM records
    save_entry(bare, PoolBuilder(N, batch_size=4).search(pipe, SLOT, SAMPLING).extras["pool_entry"])
    live = ParmPlusPlusSearch(parmpp(), num_candidates=N, max_feedback_length=4, if_never_accepted="best").search(
        pipe, SLOT, SAMPLING)
    replay = ParmPlusPlusSearch(parmpp(), num_candidates=N, max_feedback_length=4, if_never_accepted="best",
                                pool=tmp_path, pool_parm="pp").search(pipe, SLOT, SAMPLING)
    assert ParmPolicy(N).select(entry).index != ParmPolicy(N, "pp").select(entry).index == 4  # the named records
    assert replay.chosen == live.chosen
    assert [(c.index, c.seed, c.round, c.stopped_step, None if c.tokens is None else c.tokens.tolist())
            for c in replay.candidates] == [(c.index, c.seed, c.round, c.stopped_step,
                                             None if c.tokens is None else c.tokens.tolist()) for c in live.candidates]
    loop = [(e.action, e.candidates, e.detail) for e in live.trace if e.action in ("reflect", "correct", "score")]
    assert loop and loop == [(e.action, e.candidates, e.detail) for e in replay.trace
                             if e.action in ("reflect", "correct", "score")]
    assert (replay.cost.generator_forward_passes, replay.cost.judge_forward_passes) == \
        (live.cost.generator_forward_passes, live.cost.judge_forward_passes)
    assert_same_image(replay.image, live.image, "PARM++'s image")
    # a pool of other seeds for this slot is refused, naming the file
    other = Slot(SLOT.prompt, prompt_index=SLOT.prompt_index, sample_index=SLOT.sample_index, seed=SLOT.seed + 1)
    with pytest.raises(ValueError, match=r"00003_01.json is not this search's pool"):
        ParmPlusPlusSearch(parmpp(), num_candidates=N, max_feedback_length=4, pool=tmp_path,
                           pool_parm="pp").search(pipe, other, SAMPLING)
    with pytest.raises(FileNotFoundError, match="no pool entries"):
        ParmPlusPlusSearch(parmpp(), pool=tmp_path / "nope")
    with pytest.raises(ValueError, match="has no PARM records"):
        ParmPlusPlusSearch(parmpp(), num_candidates=N, pool=bare)
    with pytest.raises(ValueError, match="has no records of PARM 'pp'"):
        ParmPlusPlusSearch(parmpp(), num_candidates=N, pool=bare, pool_parm="pp")
    with pytest.raises(ValueError, match=f"holds {N} candidates, the search asks for {N + 1}"):
        ParmPlusPlusSearch(parmpp(), num_candidates=N + 1, pool=tmp_path, pool_parm="pp")
