"""Reference policies: frozen copy vs precomputed table, and the cache key (pairs, weights, masking)."""
import pytest
import torch

from dpo.batch import collate_pairs, mask_pairs
from dpo.reference import FrozenReference, PrecomputedReference, ReferenceContext, frozen, model_hash, precomputed
from dpo.toy import toy_pairs
from showo.factory import build_tiny_showo
from showo.logprob import MaskingConfig

PROMPTS = ["a red circle", "a blue square"]


@pytest.fixture(scope="module")
def tiny():
    return build_tiny_showo(["a", "red", "circle", "blue", "square"], seed=1)


def _ctx(tiny, tmp_path, masking=MaskingConfig(), pairs=None, epochs=2):
    pairs = pairs or toy_pairs(tiny.layout, PROMPTS, 5, seed=0)
    ids = [[2, 3, 4] if p.prompt == PROMPTS[0] else [2, 5, 6] for p in pairs]
    return ReferenceContext(tiny.layout, pairs, ids, masking, seed=3, epochs=epochs, run_dir=tmp_path)


def test_precomputed_table_equals_frozen_lookups(tiny, tmp_path):
    ctx = _ctx(tiny, tmp_path)
    table_ref = precomputed(tiny.model, ctx, batch_size=2)
    frozen_ref = frozen(tiny.model, ctx)
    assert isinstance(frozen_ref, FrozenReference) and isinstance(table_ref, PrecomputedReference)
    for epoch in (0, 1):
        batch = collate_pairs(ctx.pairs, ctx.prompt_ids, [4, 0, 2], epoch)
        masked = mask_pairs(batch, tiny.layout, ctx.masking, ctx.seed)
        for a, b in zip(frozen_ref.logprobs(batch, masked), table_ref.logprobs(batch, masked)):
            torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-5)
    with pytest.raises(IndexError, match="epoch 2"):
        batch = collate_pairs(ctx.pairs, ctx.prompt_ids, [0], 2)
        table_ref.logprobs(batch, mask_pairs(batch, tiny.layout, ctx.masking, ctx.seed))


def test_frozen_copy_does_not_follow_the_policy(tiny):
    policy = build_tiny_showo(["a", "red", "circle", "blue", "square"], seed=1).model
    ref = FrozenReference(policy, tiny.layout)
    with torch.no_grad():
        next(policy.parameters()).add_(1.0)
    assert model_hash(ref.model) == model_hash(tiny.model) != model_hash(policy)
    assert not any(p.requires_grad for p in ref.model.parameters())


def test_cache_is_reused_only_for_the_same_pairs_weights_and_masking(tiny, tmp_path):
    ctx = _ctx(tiny, tmp_path)
    precomputed(tiny.model, ctx, batch_size=5)
    (path,) = (tmp_path / "reference_cache").glob("*.safetensors")
    stamp = path.stat().st_mtime_ns
    precomputed(tiny.model, ctx, batch_size=5)
    assert path.stat().st_mtime_ns == stamp  # reused, not recomputed
    other_model = build_tiny_showo(["a", "red", "circle", "blue", "square"], seed=2).model
    precomputed(other_model, ctx, batch_size=5)
    precomputed(tiny.model, _ctx(tiny, tmp_path, MaskingConfig(num_draws=2)), batch_size=5)
    precomputed(tiny.model, _ctx(tiny, tmp_path, pairs=toy_pairs(tiny.layout, PROMPTS, 5, seed=1)), batch_size=5)
    assert len(list((tmp_path / "reference_cache").glob("*.safetensors"))) == 4


def test_table_shape_is_checked():
    with pytest.raises(ValueError, match=r"\[epochs, pairs, 2\]"):
        PrecomputedReference(torch.zeros(3, 2))
