"""The generator protocol (common/generator.py): Show-o and Janus-Pro (plain and with its semantic CoT) satisfy it, and
every search strategy -- best-of-N, step-level, PARM, PARM++ and the pool builder -- runs with each of them, making the
same images as a plain run of the same candidates (tiny random models, scripted judges from tests/search)."""
from __future__ import annotations

import inspect

import pytest
import torch

from common.generator import GenerationOutput, GenerationState, ImageGenerator, StepOutput
from common.validate import ConfigError
from janus.tiny import build_tiny_janus
from reward_models.orm import ORM
from reward_models.parm import Parm
from reward_models.parmpp import ParmPlusPlus
from reward_models.tiny import ScriptedYesNoJudge
from search.base import Slot
from search.best_of_n import BestOfN
from search.parm import ParmSearch, saved_forward_passes
from search.pool import FirstPolicy, OrmPolicy, ParmPolicy, PoolBuilder
from search.reflect import ParmPlusPlusSearch
from search.seeds import candidate_generators, reflection_seed
from search.step_level import StepLevelSearch
from showo.self_correction import SelfCorrectionFormat
from tests.search.search_doubles import (REFLECTION_QUESTION, WORDS, CandidateIndex, HashProcessJudge, ParmTable,
                                         image_hash_score, reference_run_any, tiny_bundle)

N = 4
SLOT = Slot("a red circle", prompt_index=3, sample_index=1, seed=7)
SHOWO_SAMPLING = {"guidance_scale": 1.75, "num_inference_steps": 4}
JANUS_SAMPLING = {"guidance_scale": 5.0, "temperature": 1.0, "top_k": None, "rows_per_step": 1}  # 4 rows: 4 steps
COT = {"temperature": 1.0, "top_k": 50, "max_new_tokens": 5}
GENERATORS = ["showo", "janus", "janus_cot"]


@pytest.fixture(scope="module")
def janus_bundle():
    return build_tiny_janus(WORDS, seed=0)


@pytest.fixture(scope="module", params=GENERATORS)
def world(request, janus_bundle):
    """(name, pipe, sampling, final tokens [N, n], predicted [S, N, n], plain output, candidate index)."""
    if request.param == "showo":
        pipe, sampling = tiny_bundle().pipeline(), SHOWO_SAMPLING
    else:
        pipe = janus_bundle.pipeline(cot=COT if request.param == "janus_cot" else None)
        sampling = JANUS_SAMPLING
    final, predicted, out = reference_run_any(pipe, SLOT, N, sampling)
    return request.param, pipe, sampling, final, predicted, out, CandidateIndex(pipe, predicted)


def code_passes(pipe, sampling, steps):
    return pipe.image_forward_passes(sampling, steps)


def plan_passes(pipe, sampling, i):
    """Forward passes candidate ``i`` spends on its plan (0 without a CoT): a run of it alone minus its codes."""
    alone = pipe([SLOT.prompt], generator=candidate_generators([SLOT.candidate_seed(i)]), output_type="tokens",
                 **sampling)
    return alone.forward_passes - code_passes(pipe, sampling, pipe.num_steps(sampling))


# ---------------------------------------------------------------------------------------------- the protocol
def test_both_pipelines_satisfy_the_protocol(world):
    name, pipe, sampling, final, _, out, _ = world
    assert isinstance(pipe, ImageGenerator) and isinstance(out, GenerationOutput)
    for member in ("prepare", "__call__"):
        assert "generator" in inspect.signature(getattr(pipe, member)).parameters
    with torch.no_grad():
        state = pipe.prepare([SLOT.prompt] * 2, generator=candidate_generators([1, 2]), **sampling)
        assert state.batch_size == 2 and not state.done
        step = pipe.step(state)
        while not state.done:
            pipe.step(state)
    assert isinstance(step, StepOutput) and step.sampled.shape == final[:2].shape
    assert isinstance(state, GenerationState)  # (final_tokens exists once the last step has run)
    assert (state.cots is not None) == (name == "janus_cot")
    assert pipe.num_steps(sampling) == 4 and pipe.can_decode
    assert pipe.device == torch.device("cpu")


def test_check_sampling_names_unknown_and_bad_keys(world):
    _, pipe, sampling, *_ = world
    pipe.check_sampling(sampling)
    with pytest.raises(ConfigError, match="nonsense"):
        pipe.check_sampling({**sampling, "nonsense": 1})
    with pytest.raises(ConfigError, match="guidance_scale"):
        pipe.check_sampling({**sampling, "guidance_scale": -1.0}, "model.sampling")


def test_forward_passes_per_image_are_what_a_generation_counts(world):
    name, pipe, sampling, final, _, out, _ = world
    full = pipe.image_forward_passes(sampling, pipe.num_steps(sampling))
    assert full == (4 if name == "showo" else final.shape[1])  # Show-o: a pass per step; Janus: a pass per code
    cot = 0 if out.cots is None else out.forward_passes - N * full
    assert out.forward_passes == N * full + cot and (cot > 0) == (name == "janus_cot")


def test_decode_is_one_image_per_call(world):
    _, pipe, _, final, *_ = world
    together = pipe.decode(final, "pil")
    alone = [pipe.decode(t[None], "pil")[0] for t in final]
    assert len(together) == N and [a.tobytes() for a in together] == [b.tobytes() for b in alone]


def test_image_logprobs_have_gradients(world):
    name, pipe, _, final, _, out, _ = world
    gens = candidate_generators(range(N))
    if name == "janus_cot":  # the plans are part of the conditioning
        lp = pipe.image_logprobs([SLOT.prompt] * N, final, generator=gens, cots=out.cots)
    else:
        lp = pipe.image_logprobs([SLOT.prompt] * N, final, generator=gens)
    assert lp.shape == final.shape and lp.requires_grad and bool(torch.isfinite(lp).all())
    assert bool((lp <= 0).all()) and bool((lp < 0).any())
    lp.sum().backward()
    assert any(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in pipe.model.parameters())
    pipe.model.zero_grad(set_to_none=True)
    with torch.no_grad():
        again = pipe.image_logprobs([SLOT.prompt] * N, final, generator=candidate_generators(range(N)),
                                    **({"cots": out.cots} if name == "janus_cot" else {}))
        if name == "showo":  # one draw of DPO's ell (showo/logprob.py) on the same masks, summed per image
            from showo.logprob import MaskingConfig, draw_masked_batch, image_logprob

            batch = draw_masked_batch(pipe.prompting.tokenize([SLOT.prompt] * N), final, pipe.layout,
                                      candidate_generators(range(N)), MaskingConfig(0.0, count_special=False))
            reference = image_logprob(pipe.model, batch, pipe.layout)
        else:  # the exact teacher-forced log-probs of janus/logprob.py
            from janus.logprob import image_logprobs

            prompts = pipe.image_prompt_ids([SLOT.prompt] * N, out.cots)
            reference = image_logprobs(pipe.model, prompts, final, pad_id=pipe.layout.pad_id).sum(-1)
    # float32, same masks and rows: only the summation order differs (1e-4 relative)
    assert torch.allclose(again.sum(-1), reference, rtol=1e-4, atol=1e-4)


def test_janus_cot_plans_come_from_each_image_generator(world):
    name, pipe, sampling, final, _, out, _ = world
    if name != "janus_cot":
        pytest.skip("only the CoT generator writes plans")
    # candidate 2 alone makes the plan and the image it made in the batch of N
    alone = pipe([SLOT.prompt], generator=candidate_generators([SLOT.candidate_seed(2)]), output_type="tokens",
                 **sampling)
    assert alone.cots == [out.cots[2]] and torch.equal(alone.tokens[0], final[2])
    # given plans are used as they are (no plan sampled): the image prompt is "{prompt}. {plan}"
    state = pipe.prepare([SLOT.prompt], generator=candidate_generators([0]), cots=["blue square"], **sampling)
    assert state.cots == ["blue square"] and state.forward_passes == 0
    ids = state.prompt_ids[0][state.prompt_mask[0].bool()].tolist()
    assert ids == pipe.prompt_ids(["a red circle. blue square"])[0]


# ---------------------------------------------------------------------------------------------- strategies
def test_best_of_n_runs_with_every_generator(world):
    _, pipe, sampling, final, _, out, index = world
    scores = [0.2, 0.9, 0.4, 0.1]
    orm = ORM(ScriptedYesNoJudge(lambda conv, image: (scores[index(image)], 0.0, "yes")))
    result = BestOfN(orm, num_candidates=N, batch_size=3).search(pipe, SLOT, sampling)
    assert result.chosen == 1
    assert all(torch.equal(c.tokens, final[c.index]) for c in result.candidates)
    assert result.cost.generator_forward_passes == out.forward_passes
    assert [c.info.get("cot") for c in result.candidates] == (out.cots or [None] * N)
    assert result.image.tobytes() == pipe.decode(final[1:2], "pil")[0].tobytes()


def test_step_level_search_runs_with_every_generator(world):
    name, pipe, sampling, final, _, out, _ = world
    judge = HashProcessJudge()
    result = StepLevelSearch(judge, num_paths=3, keep=1, expansion=2, schedule=[0, 2]).search(pipe, SLOT, sampling)
    assert judge.calls == [(0, 3), (2, 2), (3, 2)]
    per_step = [code_passes(pipe, sampling, s + 1) - code_passes(pipe, sampling, s) for s in range(4)]
    plans = sum(plan_passes(pipe, sampling, i) for i in range(3))  # branches share their parent's plan
    assert (plans > 0) == (name == "janus_cot")
    assert result.cost.generator_forward_passes == 3 * per_step[0] + 2 * sum(per_step[1:]) + plans
    chosen = result.candidates[result.chosen]
    assert chosen.score == pytest.approx(image_hash_score(result.image))
    for c in result.candidates:
        if c.tokens is not None and c.parent is None:
            assert torch.equal(c.tokens, final[c.index])  # a kept root is the plain run's path
        if c.parent is not None and out.cots is not None:
            root = c
            while root.parent is not None:
                root = result.candidates[root.parent]
            assert c.info["cot"] == out.cots[root.index]  # a branch shares its parent's (its root's) plan


def test_parm_search_runs_with_every_generator(world):
    _, pipe, sampling, final, _, out, index = world
    table = ParmTable(index, clear_at=[1, 0, 1, 2], potential=[True, False, True, False], p_no=[0.1, 0.2, 0.3, 0.4],
                      score=[0.3, 0.9, 0.5, 0.2])
    result = ParmSearch(Parm(table.judge()), num_candidates=N, batch_size=2).search(pipe, SLOT, sampling)
    assert [c.stopped_step for c in result.candidates] == [None, 0, None, 2]
    assert result.chosen == 2  # survivors with potential: 0 (0.3) and 2 (0.5)
    full = code_passes(pipe, sampling, 4)
    saved = (full - code_passes(pipe, sampling, 1)) + (full - code_passes(pipe, sampling, 3))
    assert saved_forward_passes(result) == saved
    assert result.cost.generator_forward_passes == out.forward_passes - saved
    for c in result.candidates:
        if c.tokens is not None:
            assert torch.equal(c.tokens, final[c.index])


def test_a_split_row_resumes_as_if_it_had_never_left(world):
    """GenerationState.split: copies of rows (and of their generators) that, stepped on, draw what the rows would
    have drawn in their batch; the state split from is unchanged and still finishes every row as before."""
    _, pipe, sampling, final, *_ = world
    with torch.no_grad():
        gens = candidate_generators([SLOT.candidate_seed(i) for i in range(N)])
        state = pipe.prepare([SLOT.prompt] * N, generator=gens, **sampling)
        for _ in range(2):
            pipe.step(state)
        parked = state.split([3, 1])
        assert parked.batch_size == 2 and state.batch_size == N
        before = parked.forward_passes
        while not state.done:
            pipe.step(state)
        while not parked.done:
            pipe.step(parked)
    assert torch.equal(state.final_tokens, final)
    assert torch.equal(parked.final_tokens, final[[3, 1]])
    left = code_passes(pipe, sampling, 4) - code_passes(pipe, sampling, 2)
    assert parked.forward_passes - before == 2 * left


def test_parm_resumes_a_pruned_fallback_winner_with_every_generator(world):
    _, pipe, sampling, final, _, out, index = world
    table = ParmTable(index, clear_at=[1, 0, 1, 2], potential=[False] * N, p_no=[0.4, 0.3, 0.1, 0.2],
                      score=[0.3, 0.9, 0.5, 0.2])
    result = ParmSearch(Parm(table.judge()), num_candidates=N, batch_size=2).search(pipe, SLOT, sampling)
    assert result.chosen == 2  # nobody survives: the lowest P("no")
    assert torch.equal(result.tokens, final[2])  # resumed after step 2 of 4: the path it would have been
    full = code_passes(pipe, sampling, 4)
    spent = sum(code_passes(pipe, sampling, s + 1) for s in (1, 0, 1, 2)) + full - code_passes(pipe, sampling, 2)
    plans = out.forward_passes - N * full  # a CoT's plans are drawn once, never again
    assert result.cost.generator_forward_passes == spent + plans


def test_parmpp_runs_with_every_generator(world):
    name, pipe, sampling, final, _, out, index = world
    table = ParmTable(index, clear_at=[1, 0, 1, 2], potential=[True, False, True, False], p_no=[0.1, 0.2, 0.3, 0.4],
                      score=[0.3, 0.9, 0.5, 0.2], reflect_yes_at=None)
    parmpp = ParmPlusPlus(Parm(table.judge()), reflection_question=REFLECTION_QUESTION, max_reflections=1)
    result = ParmPlusPlusSearch(parmpp, num_candidates=N, max_feedback_length=4).search(pipe, SLOT, sampling)
    corrected = result.candidates[-1]
    assert corrected.round == 1 and corrected.parent == 2 and result.chosen == corrected.index
    gen = candidate_generators([reflection_seed(SLOT.seed, SLOT.prompt_index, SLOT.sample_index, 1)])
    if name == "showo":  # the self-correction layout: prompt + feedback + previous image
        fmt = SelfCorrectionFormat(pipe.layout, max_feedback_length=4)
        prompt_ids, feedback_ids = pipe.prompting.tokenize([SLOT.prompt, "the color is wrong"])
        seq = fmt.build([prompt_ids], [feedback_ids], result.candidates[2].tokens[None])
        direct = fmt.pipeline(pipe)(input_ids=seq, generator=gen, output_type="tokens", **sampling).tokens[0]
    else:  # Janus-Pro: regenerated from "{prompt}. {explanation}", no plan sampled
        direct = pipe([SLOT.prompt], cots=["the color is wrong"], generator=gen, output_type="tokens",
                      **sampling).tokens[0]
        assert [e.detail.get("mode") for e in result.trace if e.action == "correct"] == ["regenerate"]
    assert torch.equal(corrected.tokens, direct)
    assert result.image.tobytes() == pipe.decode(direct[None], "pil")[0].tobytes()


def test_pool_builder_runs_with_every_generator(world):
    name, pipe, sampling, final, _, out, index = world
    def table():  # a fresh table per search: it counts the clarity questions it was asked
        return ParmTable(index, clear_at=[1, 0, 1, 2], potential=[True, False, True, False],
                         p_no=[0.1, 0.2, 0.3, 0.4], score=[0.3, 0.9, 0.5, 0.2])

    orm = ORM(ScriptedYesNoJudge(lambda conv, image: (image_hash_score(image), 0.0, "yes")))
    builder = PoolBuilder(N, outcome_judge=orm, process_judge=HashProcessJudge(), parm=Parm(table().judge()),
                          batch_size=3)
    result = builder.search(pipe, SLOT, sampling)
    entry = result.extras["pool_entry"]
    assert torch.equal(entry.tokens, final)
    assert entry.extras.get("cots") == out.cots
    pick = OrmPolicy(N).select(entry)
    assert result.chosen == pick.index == max(range(N), key=lambda i: (entry.outcome_scores[i], -i))
    full = code_passes(pipe, sampling, 4)
    plans = [entry.plan_passes(i) for i in range(N)]  # Janus-Pro's plans, written before the codes
    assert (min(plans) > 0) == (name == "janus_cot") and sum(plans) == out.forward_passes - N * full
    assert entry.passes(4) == full and pick.forward_passes == N * full + sum(plans)
    assert FirstPolicy().select(entry).forward_passes == full + plans[0]  # plain generation of candidate 0
    best = BestOfN(orm, num_candidates=N).search(pipe, SLOT, sampling)
    assert (pick.index, pick.forward_passes) == (best.chosen, best.cost.generator_forward_passes)
    live = ParmSearch(Parm(table().judge()), num_candidates=N).search(pipe, SLOT, sampling)
    parm_pick = ParmPolicy(N).select(entry)
    assert parm_pick.index == live.chosen
    assert parm_pick.forward_passes == live.cost.generator_forward_passes
    assert parm_pick.forward_passes == N * full + sum(plans) - saved_forward_passes(live)


def test_a_pool_policy_row_writes_the_plan_of_its_pick(world, tmp_path):
    """search.scaling.write_policy_images: a row replayed on a pool is the live row's folder, Janus-Pro's plan of the
    picked candidate beside its image (``samples/<k>.cot.txt``) and none for a generator without plans."""
    from eval.geneval.prompts import PromptSpec
    from search.scaling import write_policy_images

    name, pipe, sampling, _, _, out, _ = world
    orm = ORM(ScriptedYesNoJudge(lambda conv, image: (image_hash_score(image), 0.0, "yes")))
    entry = PoolBuilder(N, outcome_judge=orm, batch_size=3).search(pipe, SLOT, sampling).extras["pool_entry"]
    spec = PromptSpec(SLOT.prompt_index, "single_object", SLOT.prompt, (), (), {"prompt": SLOT.prompt})
    pick = OrmPolicy(N).select(entry)
    cost = write_policy_images([entry], OrmPolicy(N), lambda tokens: pipe.decode(tokens, "pil"), {spec.index: spec},
                               tmp_path)
    sample = tmp_path / "images" / f"{SLOT.prompt_index:05d}" / "samples" / "0000"
    assert sample.with_suffix(".png").is_file() and cost["generator_forward_passes"] == pick.forward_passes
    plan = sample.with_suffix(".cot.txt")
    assert plan.is_file() == (name == "janus_cot")
    if out.cots is not None:
        assert plan.read_text() == out.cots[pick.index] + "\n"
