"""Semantic-level CoT: chat templates (Janus-Pro and T2I-R1's official variant), the reasoning prompt, the image
prompt built from a CoT, and the text sampler (explicit temperature / top-k, EOS handling, log-probs)."""
from __future__ import annotations

import inspect

import pytest
import torch
from transformers import GenerationConfig

from janus.cot import COT_SYSTEM_PROMPT, REASONING_TEMPLATE, SemanticCoT, image_prompt, reasoning_text
from janus.layout import BOI_TOKEN
from janus.logprob import text_logprobs
from janus.prompting import JANUS_PRO, T2I_R1_OFFICIAL, chat_template, encode
from janus.text import sample_text

INSTRUCTION_HEAD = 'You are asked to generate an image based on this prompt: "a red cat"\nProvide a brief, precise'


def gens(*seeds):
    return [torch.Generator().manual_seed(s) for s in seeds]


# ---------------------------------------------------------------------------------------------------- (f) rendering
def test_templates_render_deepseek_separator_style():
    assert JANUS_PRO.render(" a red cat ") == "<|User|>: a red cat\n\n<|Assistant|>:"
    assert T2I_R1_OFFICIAL.render("a red cat") == "User: a red cat\n\nAssistant:"
    assert T2I_R1_OFFICIAL.render("a red cat", system="Be brief.") == "Be brief.\n\nUser: a red cat\n\nAssistant:"
    assert T2I_R1_OFFICIAL.render("") == "User:Assistant:"  # the official function's rendering of an empty turn
    assert chat_template() is JANUS_PRO and chat_template(official_t2i_r1=True) is T2I_R1_OFFICIAL


@pytest.mark.parametrize("template, user, assistant", [(JANUS_PRO, "<|User|>", "<|Assistant|>"),
                                                        (T2I_R1_OFFICIAL, "User", "Assistant")])
def test_reasoning_prompt(template, user, assistant):
    text = reasoning_text("a red cat", template)
    assert text.startswith(f"{COT_SYSTEM_PROMPT}\n\n{user}: {INSTRUCTION_HEAD}")
    assert text.endswith(f"Output your visualization directly without explanation:\n\n{assistant}:")
    assert "4. Be concise (50 words or less)\n" in text
    assert REASONING_TEMPLATE.count("{}") == 1 and REASONING_TEMPLATE.count("\n") == 8


def test_image_prompt_and_ids(tiny64):
    assert image_prompt("a red cat", "A small red cat sits.") == "a red cat. A small red cat sits."
    assert image_prompt("a red cat", None) == "a red cat"
    lay, tok = tiny64.layout, tiny64.tokenizer
    cot = SemanticCoT(tiny64.model, lay, tok, template=T2I_R1_OFFICIAL)
    ids = cot.image_prompt_ids(["a red cat"], ["two dogs"])[0]
    text = "User: a red cat. two dogs\n\nAssistant:"
    # the official tokenizer.encode(sft_format + "<begin_of_image>"): BOS, text, BOI
    assert ids == tok(text + BOI_TOKEN)["input_ids"] == encode(tok, lay, text, image=True)
    assert ids[0] == lay.bos_id and ids[-1] == lay.boi_id


# ---------------------------------------------------------------------------------------------------- text sampling
def test_cot_sampling_parameters_are_explicit():
    params = inspect.signature(SemanticCoT).parameters
    assert (params["temperature"].default, params["top_k"].default, params["max_new_tokens"].default) == (1.0, 50, 1024)


def test_top_k_one_is_greedy_whatever_the_seed(tiny64):
    cot = SemanticCoT(tiny64.model, tiny64.layout, tiny64.tokenizer, top_k=1, max_new_tokens=6)
    a, b = cot.sample(["a red cat"], gens(1)), cot.sample(["a red cat"], gens(2))
    assert torch.equal(a.sample.completion_ids, b.sample.completion_ids)
    ids = torch.tensor([cot.reasoning_ids(["a red cat"])[0]])
    with torch.no_grad():
        first = tiny64.model(input_ids=ids).logits[0, -1].argmax()
    assert a.sample.completion_ids[0, 0] == first


def test_text_sampler_matches_transformers_generate(tiny32):
    """One generator seeded like torch.manual_seed: the same tokens as transformers' text generate at T=1, top-k 50."""
    lay, model = tiny32.layout, tiny32.model
    ids = SemanticCoT(model, lay, tiny32.tokenizer).reasoning_ids(["two dogs"])[0]
    ours = sample_text(model, [ids], eos_id=lay.eos_id, pad_id=lay.pad_id, max_new_tokens=12, top_k=50,
                       generator=torch.Generator().manual_seed(9))
    model.generation_config = GenerationConfig(pad_token_id=lay.pad_id, bos_token_id=lay.bos_id,
                                               eos_token_id=lay.eos_id)
    x = torch.tensor([ids])
    torch.manual_seed(9)
    theirs = model.generate(input_ids=x, attention_mask=torch.ones_like(x), do_sample=True, temperature=1.0, top_k=50,
                            max_new_tokens=12)[:, x.shape[1]:]
    n = int(ours.completion_mask.sum())
    assert theirs.shape[1] >= n and torch.equal(ours.completion_ids[0, :n], theirs[0, :n])


def test_eos_ends_a_row_and_masks_follow(tiny64):
    lay = tiny64.layout
    cot = SemanticCoT(tiny64.model, lay, tiny64.tokenizer, max_new_tokens=40, temperature=2.0, top_k=None)
    out = cot.sample(["a red cat", "two dogs", "a cup"], gens(1, 2, 3))
    s = out.sample
    for row, mask in zip(s.completion_ids, s.completion_mask):
        eos = (row == lay.eos_id).nonzero()
        if len(eos):  # the mask covers everything up to and including the first EOS, pads after it
            first = int(eos[0])
            assert mask[: first + 1].all() and not mask[first + 1:].any() and (row[first + 1:] == lay.pad_id).all()
        else:
            assert mask.all()
    assert s.forward_passes == int(s.completion_mask.sum())
    assert out.image_prompts == [f"{p}. {c}" for p, c in zip(out.prompts, out.cots)]
    assert out.image_prompt_ids[0][-1] == lay.boi_id


def test_cot_batch_equals_singletons(tiny32):
    cot = SemanticCoT(tiny32.model, tiny32.layout, tiny32.tokenizer, max_new_tokens=10)
    prompts = ["a red cat", "two green dogs on the left"]
    batch = cot.sample(prompts, gens(4, 5))
    for i, (p, g) in enumerate(zip(prompts, (4, 5))):
        alone = cot.sample([p], gens(g))
        n = int(alone.sample.completion_mask.sum())
        assert batch.cots[i] == alone.cots[0]
        assert torch.equal(batch.sample.completion_ids[i, :n], alone.sample.completion_ids[0, :n])


def test_text_logprobs_equal_recorded(tiny64):
    lay = tiny64.layout
    cot = SemanticCoT(tiny64.model, lay, tiny64.tokenizer, max_new_tokens=30, temperature=2.0, top_k=None)
    s = cot.sample(["a red cat", "a small blue cup on the right of two dogs"], gens(6, 7)).sample
    tf = text_logprobs(tiny64.model, (s.prompt_ids, s.prompt_mask), s.completion_ids, s.completion_mask,
                       pad_id=lay.pad_id)
    assert tf.shape == s.completion_ids.shape
    assert (tf - s.logprobs).abs().max() <= 1e-10
    tf_t = text_logprobs(tiny64.model, (s.prompt_ids, s.prompt_mask), s.completion_ids, s.completion_mask,
                         pad_id=lay.pad_id, temperature=2.0)
    assert (tf_t - s.sample_logprobs).abs().max() <= 1e-10  # no top-k here: T=2 is the whole sampling distribution


def test_image_after_a_cot_does_not_depend_on_the_batch(tiny32):
    # the plans end at different lengths; a row's generator samples its plan, then its image: a row that ended early
    # must not draw on while the others finish, or its image depends on the batch it was planned in
    pipe = tiny32.pipeline(cot={"max_new_tokens": 40})
    prompts = ["a red cat", "two green dogs on the left", "a blue cup"]
    seeds = (0, 1, 2)  # plans of 40 (unfinished), 18 and 7 tokens with these weights
    batch = pipe(prompts, generator=gens(*seeds), rows_per_step=2, output_type="tokens")
    lengths = {int(n) for n in pipe.cot.sample(prompts, gens(*seeds)).sample.completion_mask.sum(1)}
    assert len(lengths) > 1, "the test needs plans of different lengths"
    for i, (p, s) in enumerate(zip(prompts, seeds)):
        alone = pipe([p], generator=gens(s), rows_per_step=2, output_type="tokens")
        assert batch.cots[i] == alone.cots[0]
        assert torch.equal(batch.tokens[i], alone.tokens[0])
