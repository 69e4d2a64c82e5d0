"""Unit tests of the Show-o pieces on tiny models (no shared data needed)."""
from __future__ import annotations

import copy
import json
import math

import pytest
import torch
from safetensors.torch import load_file, save_file

from showo.checkpoint import from_pretrained, save_pretrained
from showo.factory import build_tiny_showo, load_bundle
from showo.pipeline import ShowoPipeline
from showo.loss import IGNORE_INDEX, build_t2i_batch, mask_image_tokens, t2i_loss
from showo.prompting import T2IPrompting, t2i_attention_mask
from showo.scheduler import MaskGITScheduler
from showo.tokens import TokenLayout
from tests.helpers import TINY_VQ

WORDS = "a photo of red blue green circle square triangle left right above below two three".split()
PROMPTS = ["a photo of a red circle", "a blue square", "", "two green triangle left of a red square"]


@pytest.fixture(scope="module")
def bundle():
    b = build_tiny_showo(WORDS, vq=TINY_VQ, seed=3)
    # make the logits peaky enough that tokens actually depend on the prompt
    with torch.no_grad():
        b.model.showo.lm_head.weight.mul_(20)
    return b


def gens(seeds):
    return [torch.Generator().manual_seed(s) for s in seeds]


# ---------------------------------------------------------------------------------------------------- layout
def test_layout_official_ids():
    lay = TokenLayout()
    assert (lay.pad_id, lay.soi_id, lay.eoi_id, lay.t2i_id, lay.image_offset, lay.mask_id, lay.vocab_size) == (
        50295, 50296, 50297, 50300, 50305, 58497, 58498)
    assert (lay.seq_len, lay.image_slice) == (387, slice(130, 386))
    assert lay.with_image_tokens(1024).seq_len == 1155


def test_layout_rejects_inconsistent_config():
    with pytest.raises(ValueError, match="vocab_size=58000"):
        TokenLayout.from_config({"llm_vocab_size": 50295, "vocab_size": 58000})
    with pytest.raises(ValueError, match="square"):
        TokenLayout(num_image_tokens=250)


# ---------------------------------------------------------------------------------------------------- checkpoints
def test_save_load_roundtrip(bundle, tmp_path):
    save_pretrained(bundle.model, bundle.layout, tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["_class_name"] == "Showo" and config["llm_model_path"] == "phi_config"
    model, layout = from_pretrained(tmp_path)
    assert layout == bundle.layout
    saved, original = model.state_dict(), bundle.model.state_dict()
    assert saved.keys() == original.keys()
    for key, value in original.items():  # the round trip itself: every tensor bit for bit, dtype included
        assert saved[key].dtype == value.dtype and torch.equal(saved[key], value), key
    ids = T2IPrompting(bundle.tokenizer, layout).sequences(PROMPTS)
    mask = t2i_attention_mask(ids, layout)
    with torch.no_grad():
        got, want = model(ids, mask).logits, bundle.model(ids, mask).logits
    # the same weights through the same code: float32 logits agree to rounding (1e-5 relative is thousands of times
    # what a different kernel could change in this tiny model, and far below what a wrong or missing tensor gives)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert torch.equal(got.argmax(-1), want.argmax(-1))  # the tokens a greedy sampler would pick


def _broken_checkpoint(bundle, tmp_path, edit):
    save_pretrained(bundle.model, bundle.layout, tmp_path)
    state = load_file(str(tmp_path / "pytorch_model.safetensors"))
    edit(state)
    save_file(state, str(tmp_path / "pytorch_model.safetensors"))
    return tmp_path


def test_missing_key_is_named(bundle, tmp_path):
    path = _broken_checkpoint(bundle, tmp_path, lambda s: s.pop("showo.model.layers.1.mlp.fc2.bias"))
    with pytest.raises(ValueError, match=r"missing keys: showo.model.layers.1.mlp.fc2.bias"):
        from_pretrained(path)


def test_wrong_shape_is_named(bundle, tmp_path):
    def edit(state):
        state["showo.model.final_layernorm.weight"] = torch.ones(7)
    with pytest.raises(ValueError, match=r"showo.model.final_layernorm.weight: file \[7\] vs model \[64\]"):
        from_pretrained(_broken_checkpoint(bundle, tmp_path, edit))


def test_wrong_vocab_size_is_named(bundle, tmp_path):
    save_pretrained(bundle.model, bundle.layout, tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["vocab_size"] += 1
    config.pop("mask_token_id")
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=f"vocab_size={config['vocab_size']}"):
        from_pretrained(tmp_path)
    # a checkpoint whose embedding rows disagree with the config names the tensors
    config["vocab_size"] -= 1
    config["codebook_size"] *= 2
    config["vocab_size"] += bundle.layout.codebook_size
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="embed_tokens.weight: file"):
        from_pretrained(tmp_path)


def test_missing_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        from_pretrained(tmp_path / "nope")
    (tmp_path / "config.json").write_text(json.dumps({"llm_vocab_size": 50295, "vocab_size": 58498, "llm_model_path": "x"}))
    with pytest.raises(FileNotFoundError, match="llm_model_path='x'"):
        from_pretrained(tmp_path)


# ---------------------------------------------------------------------------------------------------- prompting
def test_overlong_prompt_truncated_with_warning(bundle):
    lay = bundle.layout
    prompting = T2IPrompting(bundle.tokenizer, lay)
    long_prompt = " ".join(["red"] * (lay.max_seq_length + 5))
    with pytest.warns(UserWarning, match="truncated"):
        ids = prompting.sequences([long_prompt])
    text = ids[0, : lay.text_len].tolist()
    red = bundle.tokenizer("red", add_special_tokens=False)["input_ids"][0]
    assert text == [lay.t2i_id, lay.bos_id] + [red] * (lay.text_len - 3) + [lay.eos_id]


def test_empty_prompt_is_the_unconditional_one(bundle):
    lay = bundle.layout
    prompting = T2IPrompting(bundle.tokenizer, lay)
    ids = prompting.sequences([""])
    assert ids[0, : lay.text_len].tolist() == [lay.pad_id] * (lay.text_len - 3) + [lay.t2i_id, lay.bos_id, lay.eos_id]
    assert torch.equal(ids, prompting.unconditional(1))


def test_mask_semantics(bundle):
    lay = bundle.layout
    ids = T2IPrompting(bundle.tokenizer, lay).sequences(["a red circle"])
    allowed = t2i_attention_mask(ids, lay)[0, 0]
    pads = int((ids[0] == lay.pad_id).sum())
    assert allowed.any(-1).all(), "no row may be fully masked"
    assert not allowed[lay.soi_pos:, :pads].any(), "image rows never see pads"
    assert allowed[lay.soi_pos:, pads:].all(), "image rows see every non-pad position"
    assert not allowed[pads:lay.text_len, lay.text_len:].any(), "text never sees the image"


# ---------------------------------------------------------------------------------------------------- scheduler
@pytest.mark.parametrize("steps,expected", [
    (18, [255, 252, 247, 240, 232, 221, 209, 196, 181, 164, 146, 127, 108, 87, 66, 44, 22, 1]),
    (16, [254, 251, 244, 236, 225, 212, 197, 181, 162, 142, 120, 97, 74, 49, 25, 1]),
])
def test_float32_mask_len(steps, expected):
    """showo.md §9.4 (the 18-step row is confirmed by the official sampler fixture)."""
    sched = MaskGITScheduler()
    got = [max(1, min(255, int((256 * sched.mask_ratio(s, steps)).floor()))) for s in range(steps)]
    assert got == expected


def test_compounding_temperature():
    sched = MaskGITScheduler(temperature=1.0)
    temps = sched.temperatures(18)
    assert temps[:3] == pytest.approx([17 / 18, 17 / 18 * 16 / 18, 17 / 18 * 16 / 18 * 15 / 18])
    assert temps[-1] == 0.0
    assert MaskGITScheduler(temperature_schedule="linear").temperatures(18)[2] == pytest.approx(15 / 18)
    # every generation starts again from T0 (no carry-over between calls: the scheduler holds no state)
    assert sched.temperatures(18) == temps


def test_scheduler_is_immutable_and_validated():
    sched = MaskGITScheduler()
    with pytest.raises(AttributeError):
        sched.temperature = 0.5
    for bad in ({"temperature": -1.0}, {"mask_schedule": "cosin"}, {"temperature_schedule": "exp"}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            MaskGITScheduler(**bad)


# ---------------------------------------------------------------------------------------------------- pipeline
def test_prefix_cache_gives_the_same_tokens(bundle):
    pipe = bundle.pipeline()
    kw = dict(num_inference_steps=6, output_type="tokens", return_trajectory=True)
    fast = pipe(PROMPTS, generator=torch.Generator().manual_seed(0), use_prefix_cache=True, **kw)
    plain = pipe(PROMPTS, generator=torch.Generator().manual_seed(0), use_prefix_cache=False, **kw)
    assert torch.equal(fast.tokens, plain.tokens)
    for a, b in zip(fast.trajectory, plain.trajectory):
        assert torch.equal(a.predicted_tokens, b.predicted_tokens)


def test_codebook_head_matches_full_head(bundle):
    model, lay = bundle.model, bundle.layout
    ids = T2IPrompting(bundle.tokenizer, lay).sequences(PROMPTS)
    mask = t2i_attention_mask(ids, lay)
    cols = slice(lay.image_offset, lay.mask_id)
    with torch.no_grad():
        full = model(ids, mask).logits
        codes = model(ids, mask, logits_rows=lay.image_slice, logits_cols=cols).logits
    assert full.shape[-1] == lay.vocab_size, "the full-vocabulary forward (training, DPO) must stay the default"
    assert codes.shape == (len(PROMPTS), lay.num_image_tokens, lay.codebook_size)
    # float32: the BLAS may block a 64-column and a full-vocabulary product differently (a few ulp); what sampling
    # reads downstream, the best code at every position, must be the same
    ref = full[:, lay.image_slice, cols]
    assert torch.allclose(codes, ref, rtol=1e-5, atol=1e-5 * float(ref.abs().max()))
    assert torch.equal(codes.argmax(-1), ref.argmax(-1))


def test_uncond_prefix_is_cached_and_invalidated_by_weight_updates(bundle):
    model = copy.deepcopy(bundle.model)
    pipe = ShowoPipeline(model, bundle.layout, tokenizer=bundle.tokenizer)
    kw = dict(num_inference_steps=4, output_type="tokens")
    calls = []
    hook = model.register_forward_hook(lambda module, args, out: calls.append(args[0].shape[0]))
    first = pipe(PROMPTS, generator=gens(range(4)), **kw).tokens
    assert calls == [4, 1, 8, 8, 8, 8]  # cond prefix, uncond prefix (one row for all images), 4 guided steps
    calls.clear()
    assert torch.equal(pipe(PROMPTS, generator=gens(range(4)), **kw).tokens, first)
    assert calls == [4, 8, 8, 8, 8]  # the unconditional prefix is reused
    with torch.no_grad():
        model.showo.model.layers[0].self_attn.v_proj.weight.mul_(3.0)  # an optimizer-like in-place update
    calls.clear()
    updated = pipe(PROMPTS, generator=gens(range(4)), **kw).tokens
    hook.remove()
    assert calls == [4, 1, 8, 8, 8, 8]  # recomputed for the new weights
    fresh = ShowoPipeline(model, bundle.layout, tokenizer=bundle.tokenizer)
    assert torch.equal(updated, fresh(PROMPTS, generator=gens(range(4)), **kw).tokens)
    assert not torch.equal(updated, first)


def test_per_image_generators_do_not_depend_on_batch(bundle):
    pipe = bundle.pipeline()
    batch = pipe(PROMPTS, generator=gens(range(4)), num_inference_steps=6, output_type="tokens")
    for i, prompt in enumerate(PROMPTS):
        single = pipe([prompt], generator=gens([i]), num_inference_steps=6, output_type="tokens")
        assert torch.equal(single.tokens[0], batch.tokens[i])
    assert len({tuple(t.tolist()) for t in batch.tokens}) == 4


def test_prompt_changes_the_image(bundle):
    pipe = bundle.pipeline()
    a = pipe(["a red circle"], generator=gens([1]), num_inference_steps=6, output_type="tokens").tokens
    b = pipe(["a blue square"], generator=gens([1]), num_inference_steps=6, output_type="tokens").tokens
    assert not torch.equal(a, b)


def test_trajectory_and_decoding(bundle):
    pipe = bundle.pipeline()
    steps = 5
    out = pipe(PROMPTS[:2], generator=gens([0, 1]), num_inference_steps=steps, return_trajectory=True)
    assert len(out.trajectory) == steps and len(out.images) == 2
    assert out.images[0].size == (16, 16) and out.images[0].mode == "RGB"
    first = out.trajectory[0].input_tokens
    assert (first == bundle.layout.mask_id).all()
    masked = [int((r.input_tokens == bundle.layout.mask_id).sum()) for r in out.trajectory]
    assert masked == sorted(masked, reverse=True)
    assert torch.equal(out.trajectory[-1].predicted_tokens, out.tokens)
    assert (out.tokens < bundle.layout.codebook_size).all()
    predicted = pipe.decode(out.trajectory[1].predicted_tokens, "pt")
    assert predicted.shape == (2, 3, 16, 16) and 0 <= float(predicted.min()) <= float(predicted.max()) <= 1
    assert out.forward_passes == 2 * steps


def test_select_prunes_and_branches(bundle):
    pipe = bundle.pipeline()
    state = pipe.prepare(PROMPTS, generator=gens(range(4)), num_inference_steps=4)
    pipe.step(state)
    state.select([2, 2, 0])
    assert state.prompts == [PROMPTS[2], PROMPTS[2], PROMPTS[0]]
    assert state.generator[0] is not state.generator[1]
    while not state.done:
        pipe.step(state)
    assert state.final_tokens.shape == (3, bundle.layout.num_image_tokens)
    assert torch.equal(state.final_tokens[0], state.final_tokens[1])  # same state, cloned generator
    assert state.forward_passes == 4 + 3 * 3


def test_bundle_roundtrip(bundle, tmp_path):
    bundle.save_pretrained(tmp_path)
    loaded = load_bundle(tmp_path)
    out_a = bundle.pipeline()(PROMPTS, generator=gens(range(4)), num_inference_steps=4, output_type="tokens")
    out_b = loaded.pipeline()(PROMPTS, generator=gens(range(4)), num_inference_steps=4, output_type="tokens")
    assert torch.equal(out_a.tokens, out_b.tokens)


# ---------------------------------------------------------------------------------------------------- training loss
def test_masking_follows_the_cosine_schedule():
    lay = TokenLayout(llm_vocab_size=20, codebook_size=64, num_image_tokens=64, max_seq_length=8, bos_id=0, eos_id=0)
    codes = torch.randint(0, 64, (2000, 64), generator=torch.Generator().manual_seed(0))
    ids, labels = mask_image_tokens(codes, lay, torch.Generator().manual_seed(1))
    masked = ids == lay.mask_id
    assert torch.equal(masked, labels != IGNORE_INDEX)
    assert torch.equal(labels[masked], codes[masked] + lay.image_offset)
    assert torch.equal(ids[~masked], codes[~masked] + lay.image_offset)
    assert int(masked.sum(1).min()) >= 1
    # E[cos(pi t / 2)] = 2 / pi for t ~ U(0, 1)
    assert float(masked.float().mean()) == pytest.approx(2 / math.pi, abs=0.02)


def test_t2i_loss_is_unshifted_cross_entropy(bundle):
    lay = bundle.layout
    prompt_ids = T2IPrompting(bundle.tokenizer, lay).tokenize(PROMPTS)
    codes = torch.randint(0, lay.codebook_size, (4, lay.num_image_tokens), generator=torch.Generator().manual_seed(0))
    batch = build_t2i_batch(prompt_ids, codes, lay, torch.Generator().manual_seed(0), cond_dropout_prob=0.0)
    logits = bundle.model(batch["input_ids"], batch["attention_mask"]).logits
    loss = t2i_loss(logits, batch["labels"], lay)
    labels = batch["labels"]
    pos = (labels != IGNORE_INDEX).nonzero().tolist()
    assert all(p >= lay.text_len for _, p in pos)
    manual = torch.stack([-logits[b, p].log_softmax(-1)[labels[b, p]] for b, p in pos]).mean()
    assert loss.item() == pytest.approx(manual.item(), rel=1e-5)
    assert (labels[:, lay.soi_pos] == lay.soi_id).all() and (labels[:, -1] == lay.eoi_id).all()
    loss.backward()
    assert bundle.model.showo.model.embed_tokens.weight.grad is not None
    bundle.model.zero_grad(set_to_none=True)


def test_prompt_dropout_uses_the_empty_prompt(bundle):
    lay = bundle.layout
    prompt_ids = T2IPrompting(bundle.tokenizer, lay).tokenize(PROMPTS[:2])
    codes = torch.zeros(2, lay.num_image_tokens, dtype=torch.long)
    batch = build_t2i_batch(prompt_ids, codes, lay, torch.Generator().manual_seed(0), cond_dropout_prob=1.0)
    uncond = T2IPrompting(bundle.tokenizer, lay).unconditional(2)
    assert torch.equal(batch["input_ids"][:, : lay.text_len], uncond[:, : lay.text_len])


@pytest.mark.parametrize("use_prefix_cache", [True, False])
def test_identical_rows_are_computed_once(bundle, use_prefix_cache):
    """Rows with the same prompt and image tokens (step-level search's continuations of one kept state) go through the
    transformer once: in float64 their logits are exactly each row's alone, and every row still draws its own tokens
    with its own generator, the ones it draws stepped alone."""
    model = copy.deepcopy(bundle.model).double()
    pipe = ShowoPipeline(model, bundle.layout, tokenizer=bundle.tokenizer)
    state = pipe.prepare(PROMPTS[:2], generator=gens([0, 1]), num_inference_steps=6, use_prefix_cache=use_prefix_cache)
    pipe.step(state)
    rows = [0, 0, 1, 0, 1]
    state.select(rows)
    state.generator = gens(range(10, 10 + len(rows)))  # siblings with fresh generators, as search branches them
    alone = [state.split([r]) for r in range(len(rows))]
    calls = []
    hook = model.register_forward_hook(lambda module, args, out: calls.append(args[0].shape[0]))
    logits = pipe.guided_logits(state)
    hook.remove()
    assert calls == [4]  # 2 distinct rows, conditional and unconditional
    for r, one in enumerate(alone):
        assert torch.equal(logits[r], pipe.guided_logits(one)[0]), f"row {r}"
    pipe.step(state)
    for r, one in enumerate(alone):
        pipe.step(one)
        assert torch.equal(state.tokens[r], one.tokens[0]), f"row {r}"
    assert not torch.equal(state.tokens[0], state.tokens[1])  # same logits, own generators
