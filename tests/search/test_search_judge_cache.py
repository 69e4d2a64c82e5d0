"""PARM search with the potential turn on the clarity turn's KV cache (Parm(reuse_clarity_cache=True)) against the
uncached search, with a real tiny LLaVA-OneVision judge in float64 and the tiny Show-o. CPU, no downloads."""
from __future__ import annotations

import torch

from reward_models.lmm_judge import LMMYesNoJudge
from reward_models.parm import Parm
from reward_models.tiny import build_tiny_llava_onevision
from search.base import Slot
from search.parm import ParmSearch
from showo.pipeline import ShowoPipeline
from tests.search.search_doubles import tiny_bundle

SAMPLING = {"guidance_scale": 1.75, "num_inference_steps": 6}


def _judge(directory) -> LMMYesNoJudge:
    """A float64 judge in sample mode whose answer is "yes" or "no" about half the time each (a head with large,
    equal yes / no biases and small random weights), so PARM's sampled decisions differ between paths."""
    judge = LMMYesNoJudge(directory, dtype="float64", batch_size=4, image_view="anyres", mode="sample")
    old = judge.model.lm_head
    head = torch.nn.Linear(old.in_features, old.out_features, bias=True, dtype=torch.float64)
    torch.nn.init.zeros_(head.weight)
    torch.nn.init.zeros_(head.bias)
    gen = torch.Generator().manual_seed(5)
    for word in ("yes", "no"):
        (token,) = judge.tokenizer.encode(word, add_special_tokens=False)
        head.bias.data[token] = 20.0
        head.weight.data[token] = 0.5 * torch.randn(old.in_features, generator=gen, dtype=torch.float64)
    judge.model.lm_head = head
    return judge


def test_parm_search_with_reused_cache_is_the_uncached_search(tmp_path):
    bundle = tiny_bundle()
    pipe = ShowoPipeline(bundle.model, bundle.layout, bundle.tokenizer, bundle.vq_model)
    judge = _judge(build_tiny_llava_onevision(tmp_path / "judge", image_size=16, patch_size=8))
    slot = Slot("a photo of a red circle", seed=3)
    runs = []
    for reuse in (False, True):
        judge._generator.manual_seed(0)  # both searches draw the judge's answers from the same stream
        search = ParmSearch(Parm(judge, reuse_clarity_cache=reuse), num_candidates=6, batch_size=6)
        runs.append(search.search(pipe, slot, SAMPLING))
    plain, cached = runs
    def info(result):
        return [(c.info["clear_step"], c.info["potential"], c.info["pruned_step"]) for c in result.candidates]

    assert info(cached) == info(plain)
    assert len({(step, potential) for step, potential, _ in info(plain)}) > 2  # decisions differ between paths
    for a, b in zip(plain.candidates, cached.candidates):
        # float64: the cached potential turn equals the recomputed one to rounding (measured 0.0 on the tiny judge)
        assert a.info["p_no"] == b.info["p_no"] or abs(a.info["p_no"] - b.info["p_no"]) <= 1e-10 * abs(a.info["p_no"])
    assert cached.chosen == plain.chosen
    assert cached.cost.as_dict() == plain.cost.as_dict()
