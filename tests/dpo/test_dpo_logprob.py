"""The masked-token image log-likelihood (showo/logprob.py) against a brute-force computation on a tiny Show-o."""
import math

import pytest
import torch

from common.seeding import seeded_generator
from dpo.batch import collate_pairs, mask_pairs
from dpo.toy import toy_pairs
from showo.factory import build_tiny_showo
from showo.logprob import MaskingConfig, draw_masked_batch, image_logprob, masked_token_logprob
from showo.prompting import build_t2i_sequences

WORDS = ["a", "red", "circle", "blue", "square"]


@pytest.fixture(scope="module")
def tiny():
    return build_tiny_showo(WORDS, seed=3)


def _expected_draw(seed_keys, n, cond_dropout_prob):
    """The recipe written out independently: t ~ U(0,1), k = max(1, round(N cos(pi t / 2))) positions with the
    smallest uniform keys, then keep the prompt iff u >= p."""
    g = seeded_generator(*seed_keys)
    t = torch.rand(1, generator=g).item()
    k = max(1, round(n * math.cos(math.pi * t / 2)))
    positions = set(torch.rand(1, n, generator=g).argsort(-1)[0, :k].tolist())
    keep = torch.rand(1, generator=g).item() >= cond_dropout_prob
    return positions, keep


def test_masks_follow_the_official_recipe(tiny):
    lay = tiny.layout
    codes = torch.randint(0, lay.codebook_size, (3, lay.num_image_tokens), generator=torch.Generator().manual_seed(0))
    prompts = [[2, 3], [4], [5, 6]]
    mb = draw_masked_batch(prompts, codes, lay, [seeded_generator(7, i) for i in range(3)], MaskingConfig(cond_dropout_prob=0.5))
    for i in range(3):
        positions, keep = _expected_draw((7, i), lay.num_image_tokens, 0.5)
        image = mb.input_ids[i, lay.image_slice]
        assert {j for j in range(lay.num_image_tokens) if image[j] == lay.mask_id} == positions
        labels = mb.labels[i, lay.image_slice]
        for j in range(lay.num_image_tokens):
            assert labels[j].item() == (codes[i, j].item() + lay.image_offset if j in positions else -100)
            if j not in positions:
                assert image[j].item() == codes[i, j].item() + lay.image_offset
        expected_text = build_t2i_sequences([prompts[i] if keep else []], lay)[0, : lay.text_len]
        assert torch.equal(mb.input_ids[i, : lay.text_len], expected_text)
        assert mb.labels[i, lay.soi_pos] == lay.soi_id and mb.labels[i, -1] == lay.eoi_id
        assert (mb.labels[i, : lay.text_len] == -100).all()


def _brute_force(model, mb, lay):
    """Sum over scored positions of log_softmax(logits at that position)[label], one position at a time."""
    out = []
    with torch.no_grad():
        for r in range(mb.input_ids.shape[0]):
            logits = model(mb.input_ids[r: r + 1], mb.attention_mask[r: r + 1]).logits[0].double()
            total = 0.0
            for j in range(mb.input_ids.shape[1]):
                label = mb.labels[r, j].item()
                if label != -100:
                    total += torch.log_softmax(logits[j], -1)[label].item()
            out.append(total)
    return torch.tensor(out, dtype=torch.float64)


@pytest.mark.parametrize("num_draws", [1, 3])
def test_image_logprob_matches_brute_force(tiny, num_draws):
    lay, model = tiny.layout, tiny.model
    codes = torch.randint(0, lay.codebook_size, (2, lay.num_image_tokens), generator=torch.Generator().manual_seed(1))
    masking = MaskingConfig(num_draws=num_draws)
    mb = draw_masked_batch([[2, 3, 4], [5]], codes, lay, [seeded_generator(0, i) for i in range(2)], masking)
    with torch.no_grad():
        ell = image_logprob(model, mb, lay)
    brute = _brute_force(model, mb, lay).view(2, num_draws).mean(-1)
    assert ell.shape == (2,)
    torch.testing.assert_close(ell.double(), brute, atol=1e-4, rtol=1e-5)


def test_count_special_false_drops_soi_eoi(tiny):
    lay, model = tiny.layout, tiny.model
    codes = torch.zeros(1, lay.num_image_tokens, dtype=torch.long)
    with_special = draw_masked_batch([[2]], codes, lay, [seeded_generator(1)], MaskingConfig())
    without = draw_masked_batch([[2]], codes, lay, [seeded_generator(1)], MaskingConfig(count_special=False))
    assert torch.equal(with_special.input_ids, without.input_ids)
    with torch.no_grad():
        diff = image_logprob(model, with_special, lay) - image_logprob(model, without, lay)
        logits = model(with_special.input_ids, with_special.attention_mask).logits[0].double().log_softmax(-1)
    expected = logits[lay.soi_pos, lay.soi_id] + logits[-1, lay.eoi_id]
    torch.testing.assert_close(diff.double(), expected.view(1), atol=1e-4, rtol=0)


def test_masked_token_logprob_by_hand():
    logits = torch.log(torch.tensor([[[0.5, 0.25, 0.25], [0.1, 0.1, 0.8]]]))  # [1, 2, 3]
    labels = torch.tensor([[1, -100]])
    assert masked_token_logprob(logits, labels).item() == pytest.approx(math.log(0.25), abs=1e-6)
    labels = torch.tensor([[0, 2]])
    assert masked_token_logprob(logits, labels).item() == pytest.approx(math.log(0.5 * 0.8), abs=1e-6)


def test_pair_masks_do_not_depend_on_the_batch(tiny):
    lay = tiny.layout
    pairs = toy_pairs(lay, ["a red circle", "a blue square"], 4)
    prompt_ids = [[2, 3, 4], [2, 5, 6]] * 2
    full = mask_pairs(collate_pairs(pairs, prompt_ids, [0, 1, 2, 3], 0), lay, MaskingConfig(), seed=5)
    single = mask_pairs(collate_pairs(pairs, prompt_ids, [2], 0), lay, MaskingConfig(), seed=5)
    # rows: chosen 0..3 then rejected 0..3; pair 2 alone: chosen then rejected
    assert torch.equal(single.input_ids[0], full.input_ids[2]) and torch.equal(single.input_ids[1], full.input_ids[6])
    assert torch.equal(single.labels[1], full.labels[6])
    other_epoch = mask_pairs(collate_pairs(pairs, prompt_ids, [2], 1), lay, MaskingConfig(), seed=5)
    assert not torch.equal(other_epoch.input_ids, single.input_ids)


def test_chosen_and_rejected_masks_are_independent(tiny):
    lay = tiny.layout
    pairs = toy_pairs(lay, ["a red circle"], 6)
    mb = mask_pairs(collate_pairs(pairs, [[2, 3, 4]] * 6, list(range(6)), 0), lay, MaskingConfig(), seed=0)
    masked = mb.input_ids[:, lay.image_slice] == lay.mask_id
    assert any(not torch.equal(masked[i], masked[i + 6]) for i in range(6))


def test_shared_pair_masks_cancel_what_the_two_images_share(tiny):
    """pair_masks=shared: the rejected image gets the chosen one's mask, dropout and draws (the image ids of the two
    rows differ only where the codes do), so a pair of identical images has a log-likelihood difference of 0;
    independent draws give the same pair a non-zero difference."""
    lay = tiny.layout
    pairs = toy_pairs(lay, ["a red circle", "a blue square"], 6)
    prompt_ids = [[2, 3, 4], [2, 5, 6]] * 3
    batch = collate_pairs(pairs, prompt_ids, list(range(6)), 0)
    shared = MaskingConfig(cond_dropout_prob=0.5, num_draws=2, pair_masks="shared")
    mb = mask_pairs(batch, lay, shared, seed=0)
    rows = len(batch) * 2  # chosen rows (pair x draw), then rejected
    ids, other = mb.input_ids[:rows], mb.input_ids[rows:]
    assert torch.equal(ids[:, : lay.text_len], other[:, : lay.text_len])  # same prompt dropout
    assert torch.equal(ids[:, lay.image_slice] == lay.mask_id, other[:, lay.image_slice] == lay.mask_id)
    assert not torch.equal(ids, other)  # the pairs' images differ (toy pairs), so the visible codes do
    same = collate_pairs(pairs, prompt_ids, list(range(6)), 0)
    same.rejected = same.chosen.clone()
    with torch.no_grad():
        chosen, rejected = image_logprob(tiny.model, mask_pairs(same, lay, shared, seed=0), lay).chunk(2)
        c2, r2 = image_logprob(tiny.model, mask_pairs(same, lay, MaskingConfig(num_draws=2), seed=0), lay).chunk(2)
    # identical rows of one forward: equal up to float32 kernel differences between batch rows (1e-4 of a sum over
    # up to 66 log-probabilities of about -7); independent draws differ by whole tokens' log-probabilities
    assert torch.allclose(chosen, rejected, rtol=0, atol=1e-4)
    assert (c2 - r2).abs().max() > 1.0
    with pytest.raises(ValueError, match="pair_masks"):
        MaskingConfig(pair_masks="paired")


def test_bad_codes_are_rejected(tiny):
    lay = tiny.layout
    codes = torch.full((1, lay.num_image_tokens), lay.codebook_size)
    with pytest.raises(ValueError, match="codes must be in"):
        draw_masked_batch([[2]], codes, lay, [seeded_generator(0)])
    with pytest.raises(ValueError, match="num_draws"):
        MaskingConfig(num_draws=0)
