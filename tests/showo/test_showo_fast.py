"""Fast mode (showo/fast.py): opt-in bf16 sampling, never the default; exact mode is covered by the parity tests."""
from __future__ import annotations

import copy

import pytest
import torch

from common.validate import ConfigError
from showo.factory import build_tiny_showo
from showo.fast import FastMode, compile_unsupported_reason
from showo.pipeline import ShowoPipeline

WORDS = "a photo of red blue green circle square triangle left right above below two three".split()
PROMPTS = ["a photo of a red circle", "a blue square", "", "two green triangle left of a red square"]
BF16_UNIT_ROUNDOFF = 2.0 ** -8  # bf16 keeps 8 significant bits: round-to-nearest is off by at most 2^-8 relative


@pytest.fixture(scope="module")
def bundle():
    b = build_tiny_showo(WORDS, seed=3)
    with torch.no_grad():  # peaky logits, so that tokens depend on the prompt (as in test_showo_core)
        b.model.showo.lm_head.weight.mul_(20)
    return b


def gens(seeds):
    return [torch.Generator().manual_seed(s) for s in seeds]


def pipelines(bundle, fast=None):
    """(exact, fast) pipelines over two copies of the same weights (fast mode casts its model in place)."""
    exact = ShowoPipeline(copy.deepcopy(bundle.model), bundle.layout, tokenizer=bundle.tokenizer)
    return exact, ShowoPipeline(copy.deepcopy(bundle.model), bundle.layout, tokenizer=bundle.tokenizer,
                                fast=fast or FastMode())


def test_exact_mode_is_the_default(bundle):
    pipe = bundle.pipeline()
    assert pipe.fast is None and pipe.model.dtype == torch.float32 and pipe._step_forward is pipe.model


def test_fast_mode_runs_and_gives_valid_tokens(bundle):
    _, fast = pipelines(bundle)
    assert fast.model.dtype == torch.bfloat16
    lay = bundle.layout
    out = fast(PROMPTS, generator=gens(range(4)), num_inference_steps=6, output_type="tokens")
    assert out.tokens.shape == (len(PROMPTS), lay.num_image_tokens) and out.tokens.dtype == torch.long
    assert int(out.tokens.min()) >= 0 and int(out.tokens.max()) < lay.codebook_size  # codes, no [MASK] left
    again = fast(PROMPTS, generator=gens(range(4)), num_inference_steps=6, output_type="tokens")
    assert torch.equal(out.tokens, again.tokens), "per-image generators make fast mode reproducible too"
    assert not torch.equal(out.tokens[0], out.tokens[1]), "the prompt must still change the image"


@pytest.mark.parametrize("cache", [True, False])
def test_fast_logits_within_bf16_tolerance_of_exact(bundle, cache):
    exact, fast = pipelines(bundle)
    w = 1.75
    se, sf = (p.prepare(PROMPTS, guidance_scale=w, num_inference_steps=6, generator=gens(range(4)),
                        use_prefix_cache=cache) for p in (exact, fast))
    with torch.no_grad():
        ref, got = exact.guided_logits(se), fast.guided_logits(sf)
        scale = exact.model(exact.prompting.sequences(PROMPTS), se.mask[:4]).logits.abs().max()
    assert got.dtype == torch.float32 and torch.isfinite(got).all()
    # Tolerance: a logit is the product of the final hidden state, rounded to bf16 (unit roundoff u = 2^-8), and a
    # float32 head row, so it is off by about u of the logit scale, plus what the layers' own bf16 roundings carried
    # in; 4u of the largest |logit| covers it with room. Guidance (1 + w) cond - w uncond adds the two branches' errors
    # with weights summing to 1 + 2w. Measured on this model: 0.9 x (1 + 2w) u x scale (a bf16 head: 1.0), i.e. the
    # bound has a 4x margin.
    tol = (1 + 2 * w) * 4 * BF16_UNIT_ROUNDOFF * float(scale)
    diff = (got - ref).abs()
    assert float(diff.max()) <= tol, f"max |fast - exact| {float(diff.max()):.4f} > {tol:.4f}"
    assert float(diff.max()) > 0, "fast mode must actually compute in bf16"
    # what sampling reads downstream: bf16 cannot promise the same tokens (the draws compare probabilities), but the
    # best code of a position changes only where two codes are within rounding of each other: rare (measured: never)
    agree = (got.argmax(-1) == ref.argmax(-1)).float().mean()
    assert float(agree) >= 0.95, f"fast mode's best code agrees with exact mode's at only {float(agree):.1%}"


def test_fast_config_is_validated():
    assert FastMode.from_config(None) is None
    assert FastMode.from_config({"dtype": "bfloat16", "compile": "auto"}) == FastMode(torch.bfloat16, "auto")
    with pytest.raises(ConfigError, match=r"model\.fast\.dtype = 'bf16'"):
        FastMode.from_config({"dtype": "bf16"})
    with pytest.raises(ConfigError, match=r"unknown setting\(s\) \['amp'\]"):
        FastMode.from_config({"dtype": "bfloat16", "amp": True})
    with pytest.raises(ConfigError, match=r"model\.fast\.compile = 'yes'"):
        FastMode.from_config({"compile": "yes"})
    with pytest.raises(ConfigError, match=r"model\.fast\.float32_head = 'no'"):
        FastMode.from_config({"float32_head": "no"})


def test_fast_mode_config_composes_and_builds(tmp_path):
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from common.recipe import build_generator
    from tests.helpers import REPO_ROOT

    with initialize_config_dir(config_dir=str(REPO_ROOT / "configs"), version_base="1.3"):
        plain = compose(config_name="generate", overrides=["+experiment=shapes/generate", "prompts=p.txt"])
        cfg = compose(config_name="generate", overrides=["+experiment=shapes/generate", "prompts=p.txt",
                                                        "+fast@model.fast=bf16"])
        tiny = compose(config_name="generate", overrides=["model=showo_tiny", "prompts=p.txt", "+fast@model.fast=bf16",
                                                         "model.fast.compile=false"])
    assert plain.model.get("fast") is None, "exact mode stays the default of every Show-o config"
    assert OmegaConf.to_container(cfg.model.fast) == {"dtype": "bfloat16", "compile": False, "float32_head": True}
    assert cfg.model.sampling.num_inference_steps == 12, "fast mode leaves the shapes sampler's settings alone"
    bundle, pipe, sampling = build_generator(tiny.model)
    assert pipe.fast == FastMode(torch.bfloat16, False, True) and bundle.model.dtype == torch.bfloat16
    assert bundle.model.showo.lm_head.weight.dtype == torch.float32, "the logits stay float32 (showo/fast.py)"
    out = pipe(["a red circle"], generator=gens([0]), output_type="tokens", **sampling)
    assert int(out.tokens.max()) < bundle.layout.codebook_size


def test_position_range_still_checked(bundle):
    model = bundle.model
    too_long = model.rotary.cos.shape[0] + 1
    ids = torch.zeros(1, too_long, dtype=torch.long)
    with pytest.raises(ValueError, match="exceeds max_position_embeddings"):
        model(ids, torch.ones(1, 1, too_long, too_long, dtype=torch.bool))


def test_compiled_step(bundle):
    reason = compile_unsupported_reason("cpu")
    if reason is not None:
        pytest.skip(f"torch.compile cannot run here: {reason}")
    _, eager = pipelines(bundle)
    _, compiled = pipelines(bundle, FastMode(torch.bfloat16, True))
    assert compiled._step_forward is not compiled.model
    kw = dict(num_inference_steps=3, output_type="tokens")
    a = eager(PROMPTS[:2], generator=gens([0, 1]), **kw).tokens
    b = compiled(PROMPTS[:2], generator=gens([0, 1]), **kw).tokens
    assert b.shape == a.shape and int(b.min()) >= 0 and int(b.max()) < bundle.layout.codebook_size
    # inductor may fuse bf16 ops with float32 intermediates, so the logits can differ from eager bf16 by rounding; the
    # compiled step must still be the same computation: a clear majority of the codes agree with eager fast mode
    assert float((a == b).float().mean()) >= 0.9
