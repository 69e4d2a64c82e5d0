"""Semantic-level CoT: T2I-R1's reasoning prompt, the sampled plan, and the image prompt built from it
(reference t2i_r1.md §3.1–3.4).

1. The reasoning instruction (:data:`REASONING_TEMPLATE`, the text of T2I-R1's ``data/prompt/reasoning_prompt.txt``)
   with the prompt inserted, under :data:`COT_SYSTEM_PROMPT`, rendered with the chat template.
2. The LLM samples a short plan (:func:`janus.text.sample_text`; temperature and top-k are explicit, T2I-R1
   effectively used 1.0 and 50; at most ``max_new_tokens`` = 1024).
3. The plan is decoded without special tokens and the image prompt is ``"{prompt}. {cot}"`` rendered with the same
   chat template and **no** system prompt, followed by ``<begin_of_image>``.

The chat template is Janus-Pro's (``<|User|>`` / ``<|Assistant|>``) by default; ``template=T2I_R1_OFFICIAL`` gives
the official code's ``User:`` / ``Assistant:`` roles (see :mod:`janus.prompting`). Two things of the official trainer
are not reproduced: it right-pads the image prompts of a group and puts ``<begin_of_image>`` after the padding (so
an image's positions, and its unconditional row's length, depend on the longest CoT of its group), and its loss pass
would count pads in the position ids of left-padded reasoning prompts while its sampler does not (harmless there: a
GPU's batch repeats one prompt, so nothing is padded). Here every row is left-padded with its own position ids in
sampling and in scoring, so nothing depends on the batch.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

from .layout import JanusLayout
from .draw import Generator
from .prompting import JANUS_PRO, ChatTemplate, encode, image_prompt
from .text import TextSample, sample_text

REASONING_TEMPLATE = (
    'You are asked to generate an image based on this prompt: "{}"\n'
    "Provide a brief, precise visualization of all elements in the prompt. Your description should:\n"
    "1. Include every object mentioned in the prompt\n"
    "2. Specify visual attributes (color, number, shape, texture) if specified in the prompt\n"
    "3. Clarify relationships (e.g., spatial) between objects if specified in the prompt\n"
    "4. Be concise (50 words or less)\n"
    "5. Focus only on what's explicitly stated in the prompt\n"
    "6. Do not elaborate beyond the attributes or relationships specified in the prompt\n"
    "Do not miss objects. Output your visualization directly without explanation:"
)
COT_SYSTEM_PROMPT = (
    "You are a helpful assistant that receives an image prompt and generate a visualization of the prompt."
)


def reasoning_text(prompt: str, template: ChatTemplate = JANUS_PRO, instruction: str = REASONING_TEMPLATE,
                   system: str = COT_SYSTEM_PROMPT) -> str:
    """The rendered reasoning prompt (system prompt, instruction with ``prompt``, assistant turn opened)."""
    if "{}" not in instruction:
        raise ValueError(f"the reasoning instruction must hold '{{}}' where the prompt goes, got {instruction[:60]!r}")
    return template.render(instruction.format(prompt), system=system)


@dataclass
class CoTOutput:
    prompts: list[str]
    cots: list[str]  # decoded plans (special tokens skipped)
    image_prompts: list[str]  # "{prompt}. {cot}"
    image_prompt_ids: list[list[int]]  # rendered, [bos, ..., <begin_of_image>], ready for JanusPipeline(input_ids=)
    sample: TextSample  # ids, masks and log-probs of the plans (for GRPO)


class SemanticCoT:
    """Writes the semantic-level CoT of prompts and the image prompts conditioned on it.

    ``instruction`` / ``system_prompt``: the reasoning prompt (T2I-R1's by default; ``{}`` marks the prompt).
    """

    def __init__(self, model, layout: JanusLayout, tokenizer, *, template: ChatTemplate = JANUS_PRO,
                 temperature: float = 1.0, top_k: Optional[int] = 50, max_new_tokens: int = 1024,
                 instruction: str = REASONING_TEMPLATE, system_prompt: str = COT_SYSTEM_PROMPT) -> None:
        self.model, self.layout, self.tokenizer, self.template = model, layout, tokenizer, template
        self.temperature, self.top_k, self.max_new_tokens = temperature, top_k, max_new_tokens
        self.instruction, self.system_prompt = instruction, system_prompt
        reasoning_text("", template, instruction, system_prompt)  # a bad instruction fails here, not mid-run

    def reasoning_ids(self, prompts: Sequence[str]) -> list[list[int]]:
        return [encode(self.tokenizer, self.layout, reasoning_text(p, self.template, self.instruction,
                                                                   self.system_prompt), image=False)
                for p in prompts]

    def image_prompt_ids(self, prompts: Sequence[str], cots: Sequence[Optional[str]]) -> list[list[int]]:
        if len(prompts) != len(cots):
            raise ValueError(f"{len(prompts)} prompts but {len(cots)} CoTs")
        return [encode(self.tokenizer, self.layout, self.template.render(image_prompt(p, c)), image=True)
                for p, c in zip(prompts, cots)]

    def sample(self, prompts: Sequence[str], generator: Generator = None) -> CoTOutput:
        """One plan per prompt (repeat a prompt G times for a GRPO group; one generator per row keeps each plan
        independent of its batch)."""
        prompts = list(prompts)
        sample = sample_text(self.model, self.reasoning_ids(prompts), eos_id=self.layout.eos_id,
                             pad_id=self.layout.pad_id, max_new_tokens=self.max_new_tokens,
                             temperature=self.temperature, top_k=self.top_k, generator=generator)
        cots = []
        for ids, mask in zip(sample.completion_ids, sample.completion_mask):
            cots.append(self.tokenizer.decode(ids[mask.bool()].tolist(), skip_special_tokens=True))
        return CoTOutput(prompts=prompts, cots=cots, image_prompts=[image_prompt(p, c) for p, c in zip(prompts, cots)],
                         image_prompt_ids=self.image_prompt_ids(prompts, cots), sample=sample)
