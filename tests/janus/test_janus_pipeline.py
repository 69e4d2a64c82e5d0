"""The project's Janus-Pro sampling loop: parity with transformers, the official CFG rows and sampling parameters,
log-probs, per-image generators and the step interface search drives (tiny random models, no downloads)."""
from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch
from transformers import GenerationConfig

from janus.layout import UNKNOWN
from janus.logprob import image_logprobs
from janus.pipeline import JanusPipeline
from janus.prompting import image_rows, official_uncond

PROMPTS = ["a photo of a red cat", "two dogs", "a small green cup on the left of a big blue bench"]


def gens(*seeds):
    return [torch.Generator().manual_seed(s) for s in seeds]


def hf_generate(bundle, ids, seed, mask=None, **kwargs):
    """transformers' own image loop on one unpadded prompt (an id list) or a left-padded batch (``ids``, ``mask``),
    with the generation config the official conversion writes (temperature 1, guidance 5, pad and BOI ids)."""
    lay, model = bundle.layout, bundle.model
    model.generation_config = GenerationConfig(
        temperature=1.0, guidance_scale=5, pad_token_id=lay.pad_id, bos_token_id=lay.bos_id, eos_token_id=lay.eos_id,
        generation_kwargs={"boi_token_id": lay.boi_id})
    x = torch.tensor([ids]) if mask is None else ids
    torch.manual_seed(seed)  # transformers draws from the global generator
    return model.generate(input_ids=x, attention_mask=torch.ones_like(x) if mask is None else mask,
                          generation_mode="image", do_sample=True, **kwargs)


# ---------------------------------------------------------------------------------------------------- (a) parity
@pytest.mark.parametrize("dtype_fixture", ["tiny64", "tiny32"])
@pytest.mark.parametrize("prompt", PROMPTS[:2])
def test_tokens_match_transformers_generate(dtype_fixture, prompt, request):
    """Same seed, same tokens as ``generate(generation_mode="image")`` with top-k disabled (transformers 5.23; 5.2
    diverged in this loop). One generator seeded like ``torch.manual_seed`` gives the same multinomial draws."""
    bundle = request.getfixturevalue(dtype_fixture)
    pipe = bundle.pipeline()
    ids = pipe.prompt_ids([prompt])[0]
    ours = pipe(input_ids=[ids], generator=torch.Generator().manual_seed(11), output_type="tokens").tokens
    theirs = hf_generate(bundle, ids, 11, top_k=0)
    assert theirs.shape == (1, bundle.layout.num_image_tokens)
    assert torch.equal(ours, theirs)


def test_left_padded_batch_matches_transformers_generate(tiny64):
    """Prompts of different lengths in one batch, one generator: transformers' loop on the left-padded batch."""
    from janus.prompting import left_pad

    pipe = tiny64.pipeline()
    seqs = pipe.prompt_ids(PROMPTS)
    ours = pipe(input_ids=seqs, generator=torch.Generator().manual_seed(2), output_type="tokens").tokens
    ids, mask = left_pad(seqs, tiny64.layout.pad_id)
    assert torch.equal(ours, hf_generate(tiny64, ids, 2, mask=mask, top_k=0))


def test_bfloat16_tokens_match_transformers_with_a_dynamic_cache(tiny_bf16):
    """In bfloat16, transformers' default static cache (attention over a zero-padded max-length cache) rounds
    differently from the dynamic cache of the official loop and of ours; with a dynamic cache the tokens match."""
    from transformers import DynamicCache

    bundle = tiny_bf16
    pipe = bundle.pipeline()
    ids = pipe.prompt_ids([PROMPTS[0]])[0]
    for seed in range(3):
        ours = pipe(input_ids=[ids], generator=torch.Generator().manual_seed(seed), output_type="tokens").tokens
        cache = DynamicCache(config=bundle.model.config.text_config)
        theirs = hf_generate(bundle, ids, seed, top_k=0, past_key_values=cache)
        assert torch.equal(ours, theirs)


def test_transformers_default_top_k_is_not_the_official_sampler(tiny64):
    """transformers' default generation config applies top-k 50 to image codes; the official sampler has no top-k.
    At temperature 3 (a flat distribution) the two differ; ours with ``top_k=50`` reproduces transformers' default."""
    pipe = tiny64.pipeline()
    ids = pipe.prompt_ids([PROMPTS[0]])[0]
    hf_default = hf_generate(tiny64, ids, 5, temperature=3.0)
    ours = pipe(input_ids=[ids], generator=torch.Generator().manual_seed(5), temperature=3.0, output_type="tokens")
    ours_k50 = pipe(input_ids=[ids], generator=torch.Generator().manual_seed(5), temperature=3.0, top_k=50,
                    output_type="tokens")
    assert torch.equal(ours_k50.tokens, hf_default)
    assert not torch.equal(ours.tokens, hf_default)
    assert torch.equal(ours.tokens, hf_generate(tiny64, ids, 5, temperature=3.0, top_k=0))


# ---------------------------------------------------------------------------------------------------- (b) official
def test_official_sampling_defaults():
    for fn in (JanusPipeline.prepare, JanusPipeline.__call__):
        params = inspect.signature(fn).parameters
        assert params["guidance_scale"].default == 5.0
        assert params["temperature"].default == 1.0
        assert params["top_k"].default is None


def test_uncond_rows_are_the_official_ones(tiny64):
    lay = tiny64.layout
    pipe = tiny64.pipeline()
    seqs = pipe.prompt_ids(PROMPTS[:2])
    ids, mask = image_rows(seqs, lay.pad_id, guidance=True)
    b, width = len(seqs), max(map(len, seqs))
    for i, s in enumerate(seqs):
        n = len(s)
        assert ids[i, width - n:].tolist() == s and mask[i].tolist() == [0] * (width - n) + [1] * n
        # official: the prompt's ids with positions 1:-1 replaced by pad (BOS and <begin_of_image> kept)
        assert ids[b + i, width - n:].tolist() == [lay.bos_id] + [lay.pad_id] * (n - 2) + [lay.boi_id]
        assert mask[b + i].tolist() == mask[i].tolist()
        # transformers' rule (every token that is neither BOS nor BOI -> pad) builds the same row
        hf = torch.tensor(s).masked_fill((torch.tensor(s) != lay.bos_id) & (torch.tensor(s) != lay.boi_id), lay.pad_id)
        assert hf.tolist() == official_uncond(s, lay.pad_id)


def test_first_code_distribution_is_guided_official(tiny64):
    """The first code of a padded batch is drawn from softmax(u + 5 (c - u)) of the unpadded official rows."""
    lay, model = tiny64.layout, tiny64.model
    pipe = tiny64.pipeline()
    seqs = pipe.prompt_ids(PROMPTS[:2])
    out = pipe(input_ids=seqs, generator=gens(1, 2), output_type="tokens")
    for i, s in enumerate(seqs):
        with torch.no_grad():
            rows = torch.tensor([s, official_uncond(s, lay.pad_id)])
            h = model.model.language_model(input_ids=rows).last_hidden_state[:, -1]
            c, u = model.model.generation_head(h)
        expected = torch.log_softmax(u + 5.0 * (c - u), -1)[out.tokens[i, 0]]
        assert abs(out.logprobs[i, 0] - expected) <= 1e-10
        assert abs(out.cond_logprobs[i, 0] - torch.log_softmax(c, -1)[out.tokens[i, 0]]) <= 1e-10


# ---------------------------------------------------------------------------------------------------- (c) log-probs
@pytest.mark.parametrize("guidance", [None, 5.0])
def test_teacher_forced_logprobs_equal_recorded(tiny64, guidance):
    pipe = tiny64.pipeline()
    out = pipe(PROMPTS[:2], generator=gens(3, 4), guidance_scale=5.0, rows_per_step=3, output_type="tokens")
    recorded = out.cond_logprobs if guidance is None else out.logprobs
    tf = image_logprobs(tiny64.model, (out.prompt_ids, out.prompt_mask), out.tokens, pad_id=tiny64.layout.pad_id,
                        guidance_scale=guidance)
    assert tf.shape == out.tokens.shape
    assert (tf - recorded).abs().max() <= 1e-10
    # unpadded id lists give the same values as the padded pair
    lists = pipe.prompt_ids(PROMPTS[:2])
    tf2 = image_logprobs(tiny64.model, lists, out.tokens, pad_id=tiny64.layout.pad_id, guidance_scale=guidance)
    assert (tf2 - tf).abs().max() <= 1e-12


def test_no_guidance_runs_conditional_rows_only(tiny64):
    pipe = tiny64.pipeline()
    state = pipe.prepare(PROMPTS[:2], guidance_scale=None, generator=gens(1, 2))
    assert state.rows_mask.shape[0] == 2  # no unconditional rows
    out = pipe(PROMPTS[:2], guidance_scale=None, generator=gens(1, 2), output_type="tokens")
    assert (out.logprobs - out.cond_logprobs).abs().max() <= 1e-12  # T = 1, no top-k: the same distribution
    tf = image_logprobs(tiny64.model, (out.prompt_ids, out.prompt_mask), out.tokens, pad_id=tiny64.layout.pad_id)
    assert (tf - out.cond_logprobs).abs().max() <= 1e-10


def test_upcast_logits_in_bfloat16(tiny_bf16):
    bundle = tiny_bf16
    out = bundle.pipeline(upcast_logits=True)(PROMPTS[:1], generator=gens(0), output_type="tokens")
    assert out.logprobs.dtype == torch.float32
    tf = image_logprobs(bundle.model, (out.prompt_ids, out.prompt_mask), out.tokens, pad_id=bundle.layout.pad_id,
                        guidance_scale=5.0, upcast_logits=True)
    # bfloat16 hidden states: full-sequence and KV-cached attention round differently, about 1.5e-2 in the
    # conditional log-probs and up to guidance_scale times that in the guided ones (0.07 measured on this model)
    assert (tf - out.logprobs).abs().max() < 0.1
    assert ((out.tokens >= 0) & (out.tokens < bundle.layout.codebook_size)).all()


def test_image_logprobs_carry_gradients(tiny32):
    pipe = tiny32.pipeline()
    out = pipe(PROMPTS[:1], generator=gens(0), output_type="tokens")
    model = tiny32.model
    model.zero_grad()
    lp = image_logprobs(model, (out.prompt_ids, out.prompt_mask), out.tokens, pad_id=tiny32.layout.pad_id)
    lp.sum().backward()
    grad = model.model.language_model.layers[0].mlp.up_proj.weight.grad
    assert grad is not None and grad.abs().sum() > 0
    model.zero_grad()


# ---------------------------------------------------------------------------------------------------- (d) generators
def test_per_image_generators_batch_equals_singletons(tiny32):
    pipe = tiny32.pipeline()
    batch = pipe(PROMPTS, generator=gens(7, 8, 9), rows_per_step=2, output_type="tokens")
    for i, (p, s) in enumerate(zip(PROMPTS, (7, 8, 9))):
        alone = pipe([p], generator=gens(s), rows_per_step=2, output_type="tokens")
        assert torch.equal(batch.tokens[i], alone.tokens[0])
        # float32: padding and batch size change the last bits of the logits (tokens above are exact)
        assert torch.allclose(batch.logprobs[i], alone.logprobs[0], atol=1e-4)


# ---------------------------------------------------------------------------------------------------- steps
def test_steps_of_k_rows_predicted_image_and_trajectory(tiny64):
    lay = tiny64.layout
    h, w = lay.grid
    pipe = tiny64.pipeline()
    state = pipe.prepare(PROMPTS[:2], rows_per_step=3, generator=gens(1, 2), return_trajectory=True)
    assert state.num_steps == 2 and (state.tokens == UNKNOWN).all()
    out = pipe.step(state)
    assert out.rows_done == 3 and out.new_tokens.shape == (2, 3 * w)
    grid = out.sampled.view(2, h, w)
    assert torch.equal(grid[:, :3], out.tokens.view(2, h, w)[:, :3])
    assert torch.equal(grid[:, 3], grid[:, 2])  # the last generated row is repeated below
    assert out.masking.view(2, h, w)[:, 3:].all() and not out.masking.view(2, h, w)[:, :3].any()
    assert (out.tokens.view(2, h, w)[:, 3:] == UNKNOWN).all()
    out2 = pipe.step(state)
    assert state.done and out2.rows_done == h and not out2.masking.any()
    assert torch.equal(out2.sampled, state.final_tokens)
    assert len(state.trajectory) == 2 and torch.equal(state.trajectory[1].input_tokens, out.tokens)
    assert state.forward_passes == 2 * lay.num_image_tokens
    with pytest.raises(RuntimeError, match="all 2 steps"):
        pipe.step(state)
    full = pipe(PROMPTS[:2], generator=gens(1, 2), output_type="tokens")  # rows_per_step does not change tokens
    assert torch.equal(full.tokens, state.final_tokens)


def test_constant_fill_policy(tiny64):
    pipe = JanusPipeline(tiny64.model, tiny64.layout, tiny64.tokenizer, fill=7)
    state = pipe.prepare(PROMPTS[:1], rows_per_step=1, generator=gens(0))
    out = pipe.step(state)
    w = tiny64.layout.row_length
    assert (out.sampled[0, w:] == 7).all() and torch.equal(out.sampled[0, :w], out.tokens[0, :w])
    with pytest.raises(ValueError, match="fill"):
        JanusPipeline(tiny64.model, tiny64.layout, fill=tiny64.layout.codebook_size)


def test_select_prunes_and_branches_like_fresh_runs(tiny64):
    pipe = tiny64.pipeline()
    ref = pipe(PROMPTS[:2], generator=gens(5, 6), output_type="tokens").tokens
    state = pipe.prepare(PROMPTS[:2], rows_per_step=1, generator=gens(5, 6))
    pipe.step(state)
    state.select([1, 1, 0])  # prune nothing, branch row 1 (its generator state is copied)
    assert state.prompts == [PROMPTS[1], PROMPTS[1], PROMPTS[0]]
    while not state.done:
        pipe.step(state)
    assert torch.equal(state.final_tokens[0], ref[1]) and torch.equal(state.final_tokens[1], ref[1])
    assert torch.equal(state.final_tokens[2], ref[0])


def test_callback_runs_every_step_and_may_select(tiny64):
    pipe = tiny64.pipeline()
    seen = []

    def keep_second(p, state, out):
        seen.append(out.rows_done)
        if state.batch_size == 2:
            state.select([1])

    out = pipe(PROMPTS[:2], generator=gens(5, 6), rows_per_step=2, callback_on_step_end=keep_second,
               output_type="tokens")
    ref = pipe(PROMPTS[:2], generator=gens(5, 6), output_type="tokens").tokens
    assert seen == [2, 4] and out.tokens.shape[0] == 1 and torch.equal(out.tokens[0], ref[1])


def test_decode_official_uint8_and_pt(tiny64):
    pipe = tiny64.pipeline()
    out = pipe(PROMPTS[:1], generator=gens(0), output_type="pil")
    size = tiny64.layout.image_size
    assert out.images[0].size == (size, size) and out.images[0].mode == "RGB"
    pt = pipe.decode(out.tokens, "pt")
    assert pt.shape == (1, 3, size, size) and 0 <= float(pt.min()) and float(pt.max()) <= 1
    # PIL pixels are the official truncation of (x + 1) / 2 * 255
    official = (pt[0] * 255).clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
    assert np.array_equal(np.asarray(out.images[0]), official)
    with pytest.raises(ValueError, match="outside the codebook"):
        pipe.decode(torch.full_like(out.tokens, UNKNOWN))


def test_prepare_validates_inputs(tiny64):
    pipe = tiny64.pipeline()
    with pytest.raises(ValueError, match="must start with bos"):
        pipe.prepare(input_ids=[[5, 6, 7]])
    with pytest.raises(ValueError, match="2 generators for 1 prompts"):
        pipe.prepare(PROMPTS[:1], generator=gens(1, 2))
    with pytest.raises(ValueError, match="rows_per_step"):
        pipe.prepare(PROMPTS[:1], rows_per_step=0)
