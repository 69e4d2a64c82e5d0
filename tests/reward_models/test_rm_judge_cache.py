"""Follow-up turns on the cached clarity turn (LMMYesNoJudge.ask_keeping_cache / ask_follow_up, Parm
reuse_clarity_cache) against the uncached path, on the tiny LLaVA-OneVision. CPU, no downloads."""
from __future__ import annotations

import pytest
import torch
from PIL import Image

from reward_models.lmm_judge import LMMYesNoJudge
from reward_models.parm import Parm
from reward_models.tiny import ScriptedYesNoJudge, build_tiny_llava_onevision

PROMPTS = ["a red car", "two dogs on a bench", "a photo of a cat", "a blue cup and a yellow banana left of it"]


def _images():
    # Different sizes: different numbers of image tokens, so the cached batch is left-padded.
    sizes = [(32, 32), (48, 32), (32, 56), (40, 40)]
    return [Image.new("RGB", s, (40 * i, 200 - 40 * i, 90 + 20 * i)) for i, s in enumerate(sizes)]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return build_tiny_llava_onevision(tmp_path_factory.mktemp("tiny_judge_cache") / "llava")


def _yes_no_head(judge: LMMYesNoJudge, scale: float) -> None:
    """Make the yes / no logits large and image-dependent, so prob-mode decisions differ between rows."""
    gen = torch.Generator().manual_seed(3)
    head = judge.model.lm_head.weight
    for word in ("yes", "no"):
        (token,) = judge.tokenizer.encode(word, add_special_tokens=False)
        head.data[token] = scale * torch.randn(head.shape[1], generator=gen, dtype=torch.float64).to(head.dtype)


def _parm_conversations(judge, rows):
    parm = Parm(judge)
    clarity = [parm.clarity_conversation(p) for p in PROMPTS]
    return clarity, [parm.potential_conversation(PROMPTS[r]) for r in rows]


@pytest.mark.parametrize("view", ["anyres", "pad"])
def test_follow_up_equals_uncached_in_float64(tiny_dir, view):
    judge = LMMYesNoJudge(tiny_dir, dtype="float64", batch_size=3, image_view=view)  # two cache chunks: 3 + 1
    rows = [3, 0, 2]  # a subset, reordered, across both chunks; prompts of different lengths
    clarity, potential = _parm_conversations(judge, rows)
    images = _images()
    kept, cache = judge.ask_keeping_cache(clarity, images)
    plain = judge.ask(clarity, images)
    for name in ("p_yes", "p_no"):
        assert torch.equal(kept.components[name], plain.components[name])  # the same forward pass
    cached = judge.ask_follow_up(cache, rows, potential)
    uncached = judge.ask(potential, [images[r] for r in rows])
    for name in ("p_yes", "p_no", "p_yes_norm"):
        # float64: at most the summation order differs (cached prefix keys/values vs recomputed); measured 0.0 here.
        torch.testing.assert_close(cached.components[name], uncached.components[name], rtol=1e-10, atol=0)
    assert cached.cost == uncached.cost
    # The cache is not consumed: asking again gives the same scores.
    assert torch.equal(judge.ask_follow_up(cache, rows, potential).scores, cached.scores)


def test_follow_up_keeps_decisions_in_float32(tiny_dir):
    judge = LMMYesNoJudge(tiny_dir, dtype="float32", batch_size=4)
    _yes_no_head(judge, 3.0)
    rows = [0, 1, 2, 3]
    clarity, potential = _parm_conversations(judge, rows)
    images = _images()
    _, cache = judge.ask_keeping_cache(clarity, images)
    cached = judge.ask_follow_up(cache, rows, potential)
    uncached = judge.ask(potential, images)
    # float32: the cached and recomputed paths sum in different orders (measured <= 1.3e-6 relative on p_yes, 1.2e-7
    # on p_yes_norm); 1e-4 leaves room, and the decisions (what PARM reads) must be identical.
    torch.testing.assert_close(cached.components["p_yes_norm"], uncached.components["p_yes_norm"], rtol=1e-4, atol=0)
    assert torch.equal(cached.components["answer_yes"], uncached.components["answer_yes"])
    assert 0 < int(cached.components["answer_yes"].sum()) < 4  # the head makes the decision depend on the row
    sampler = LMMYesNoJudge(tiny_dir, dtype="float32", batch_size=4, mode="sample")
    _yes_no_head(sampler, 0.3)  # flatter: sampled answers vary
    _, cache = sampler.ask_keeping_cache(clarity, images, generator=torch.Generator().manual_seed(0))
    gens = lambda: [torch.Generator().manual_seed(10 + i) for i in rows]  # noqa: E731
    assert sampler.ask_follow_up(cache, rows, potential, generator=gens()).texts == \
        sampler.ask(potential, images, generator=gens()).texts


def test_parm_with_reused_cache_decides_the_same(tiny_dir):
    judge = LMMYesNoJudge(tiny_dir, dtype="float64", batch_size=4)
    _yes_no_head(judge, 3.0)
    steps = [[Image.new("RGB", (32, 32), (30 * i + 7 * t, 100, 60 * t % 255)) for t in range(4)] for i in range(4)]
    finals = [s[-1] for s in steps]
    results = [Parm(judge, reuse_clarity_cache=reuse).run_on_pool(PROMPTS, steps, finals) for reuse in (False, True)]
    plain, cached = results
    assert plain.selection.index == cached.selection.index
    assert plain.selection.clear_steps == cached.selection.clear_steps
    assert plain.selection.candidates == cached.selection.candidates
    assert any(s is not None for s in plain.selection.clear_steps)  # potential was asked at least once
    torch.testing.assert_close(cached.selection.p_no, plain.selection.p_no, rtol=1e-10, atol=0, equal_nan=True)
    assert plain.cost == cached.cost


def test_follow_up_errors(tiny_dir):
    judge = LMMYesNoJudge(tiny_dir, batch_size=4)
    clarity, potential = _parm_conversations(judge, [0])
    _, cache = judge.ask_keeping_cache(clarity[:2], _images()[:2])
    with pytest.raises(ValueError, match="does not extend"):
        judge.ask_follow_up(cache, [1], potential)  # row 1 is another prompt's clarity turn
    with pytest.raises(ValueError, match="not in the cache"):
        judge.ask_follow_up(cache, [5], potential)
    with pytest.raises(ValueError, match="one cached row per conversation"):
        judge.ask_follow_up(cache, [0, 1], potential)
    with pytest.raises(ValueError, match="ask_keeping_cache"):
        Parm(ScriptedYesNoJudge(lambda c, i: (0.5, 0.5, "yes")), reuse_clarity_cache=True)
    with pytest.raises(ValueError, match="potential_follow_up"):
        Parm(judge, reuse_clarity_cache=True, potential_follow_up=False)
