"""Test doubles of the judges: a tiny LLaVA-OneVision directory and a scripted yes/no judge.

:func:`build_tiny_llava_onevision` saves a tiny, randomly initialised LLaVA-OneVision judge as a complete local HF
directory (for tests and demos).

The directory holds everything :class:`reward_models.lmm_judge.LMMYesNoJudge` loads from a real checkpoint:
``config.json`` + weights (tiny SigLIP vision tower, tiny Qwen2 language model), a byte-level BPE tokenizer
trained here on the judge questions (so decoding is lossless), the image processor (small sizes) and the
processor with the ``qwen_1_5`` chat template. Nothing is downloaded. Building takes about a second.

:class:`ScriptedYesNoJudge` answers from a function of (conversation, image), e.g. a table, and records every
question it was asked, so procedures built on the judge (PARM, PARM++, search loops) can be tested exactly.
"""
from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    LlavaOnevisionConfig,
    LlavaOnevisionForConditionalGeneration,
    LlavaOnevisionImageProcessor,
    LlavaOnevisionProcessor,
    LlavaOnevisionVideoProcessor,
    PreTrainedTokenizerFast,
    Qwen2Config,
    SiglipVisionConfig,
)

from PIL import Image

from reward_models import questions
from reward_models.base import Conversation, JudgeCost, JudgeOutput, TextOutput, validate_images

__all__ = [
    "QWEN_1_5_CHAT_TEMPLATE",
    "SPECIAL_TOKENS",
    "YES_NO_WORDS",
    "ScriptedYesNoJudge",
    "build_tiny_llava_onevision",
]

# The LLaVA-NeXT ``qwen_1_5`` conversation (ChatML with the default system prompt), as the official judges are
# queried (imagegen_cot.md §3). Text items are rendered verbatim, image items as ``<image>``; questions carry
# their own ``<image>`` placeholder, like the released code. A real converted checkpoint should ship the same.
QWEN_1_5_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}"
    "{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}{{ '<image>' }}{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{{ '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<video>"]
# Answer words that must each be one token, with and without a leading space (byte-level BPE marks it).
YES_NO_WORDS = ["yes", "Yes", "no", "No", " yes", " Yes", " no", " No"]

_EXTRA_WORDS = (
    "a photo of an the and with one two three four red green blue yellow orange purple pink brown black white "
    "car dog cat bird bench cup apple banana clock person left right above below next to on top under square "
    "circle triangle The image shows is are there only but missing wrong color count object objects instead "
    "You helpful assistant system user assistant"
)


def _training_corpus() -> list[str]:
    # Repeating the answer words makes BPE merge each into a single token; the questions give the other merges.
    texts = [
        questions.ORM_QUESTION,
        questions.PRM_QUESTION,
        questions.CLARITY_PAPER,
        questions.POTENTIAL_PAPER,
        questions.CLARITY_CODE,
        questions.POTENTIAL_CODE,
        questions.REWARD_GUIDANCE_QUESTION,
        questions.REFLECTION_EXPLAIN,
        _EXTRA_WORDS,
    ]
    answers = " ".join(["yes Yes no No"] * 50)
    return list(itertools.chain(texts * 5, [answers] * 20, ["yes", "Yes", "no", "No"] * 50))


def _build_tokenizer(vocab_size: int, special_tokens: Sequence[str] = tuple(SPECIAL_TOKENS)) -> PreTrainedTokenizerFast:
    """Byte-level BPE over the judge questions with single-token answers; ``special_tokens`` start with the pad token
    ``<|endoftext|>`` and hold ``<|im_start|>``/``<|im_end|>`` (a LLaVA-NeXT tokenizer has no ``<image>`` token)."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_training_corpus(), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=list(special_tokens[1:]),
        padding_side="left",
    )
    fast.chat_template = QWEN_1_5_CHAT_TEMPLATE
    for word in YES_NO_WORDS:
        ids = fast.encode(word, add_special_tokens=False)
        if len(ids) != 1:
            raise RuntimeError(f"tiny tokenizer splits {word!r} into {len(ids)} tokens; raise vocab_size")
    return fast


def _tiny_config(
    tokenizer: PreTrainedTokenizerFast, image_size: int, patch_size: int, hidden_size: int, text_layers: int = 2,
    vision_layers: int = 2, vision_hidden_size: int | None = None,
) -> LlavaOnevisionConfig:
    """Tiny SigLIP vision tower + tiny Qwen2 text model, one anyres pinpoint of ``image_size``."""
    vision_hidden_size = hidden_size // 2 if vision_hidden_size is None else vision_hidden_size
    vision = SiglipVisionConfig(
        hidden_size=vision_hidden_size,
        intermediate_size=2 * vision_hidden_size,
        num_hidden_layers=vision_layers,
        num_attention_heads=2,
        image_size=image_size,
        patch_size=patch_size,
        vision_use_head=False,
    )
    text = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=text_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        tie_word_embeddings=False,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
    )
    return LlavaOnevisionConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        video_token_index=tokenizer.convert_tokens_to_ids("<video>"),
        image_grid_pinpoints=[[image_size, image_size]],
        vision_aspect_ratio="anyres_max_9",
        vision_feature_select_strategy="full",
    )


def build_tiny_llava_onevision(
    directory: str | Path,
    *,
    seed: int = 0,
    image_size: int = 32,
    patch_size: int = 8,
    hidden_size: int = 64,
    vocab_size: int = 600,
    text_layers: int = 2,
    vision_layers: int = 2,
    vision_hidden_size: int | None = None,
) -> Path:
    """Save a tiny LLaVA-OneVision judge under ``directory`` and return its path.

    The vision tower sees ``image_size``² pixels as ``(image_size / patch_size)``² patches; the image grid has a
    single pinpoint, so every image is encoded as one base view plus one crop (anyres with one tile).
    ``hidden_size`` / ``text_layers``: the Qwen2 text model; ``vision_hidden_size`` (default ``hidden_size // 2``) /
    ``vision_layers``: the SigLIP tower (MLPs twice as wide as the residual stream).
    Deterministic: the same ``seed`` gives byte-identical weights (the global RNG state is restored afterwards).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = _build_tokenizer(vocab_size)
    config = _tiny_config(tokenizer, image_size, patch_size, hidden_size, text_layers, vision_layers,
                          vision_hidden_size)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlavaOnevisionForConditionalGeneration(config).eval()
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.do_sample = False
    model.save_pretrained(directory, safe_serialization=True)

    image_processor = LlavaOnevisionImageProcessor(
        size={"height": image_size, "width": image_size},
        image_grid_pinpoints=[[image_size, image_size]],
    )
    processor = LlavaOnevisionProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        # Unused by the judges, but the processor class requires one.
        video_processor=LlavaOnevisionVideoProcessor(size={"height": image_size, "width": image_size}),
        num_image_tokens=(image_size // patch_size) ** 2,
        vision_feature_select_strategy="full",
        chat_template=QWEN_1_5_CHAT_TEMPLATE,
        vision_aspect_ratio="anyres_max_9",
    )
    processor.save_pretrained(directory)
    return directory


# (conversation, image) -> (P("yes"), P("no"), answer text); the answer decides, the probabilities are reported.
AnswerFn = Callable[[Conversation, Image.Image], tuple[float, float, str]]


class ScriptedYesNoJudge:
    """A :class:`~reward_models.base.YesNoJudge` that answers from ``answer_fn`` and logs every call.

    ``answer_yes`` / ``answer_no`` are 1 when the scripted answer is exactly ``"yes"`` / ``"no"`` (case-insensitive),
    so an answer such as ``"maybe"`` plays a malformed sampled answer. ``explain_fn`` scripts ``generate_text``
    (default: a fixed sentence); its cost counts whitespace-separated words as generated tokens.
    """

    image_token = "<image>"

    def __init__(self, answer_fn: AnswerFn, explain_fn: Callable[[Conversation, Image.Image], str] | None = None):
        self.answer_fn = answer_fn
        self.explain_fn = explain_fn
        self.calls: list[tuple[Conversation, Image.Image]] = []
        self.text_calls: list[tuple[Conversation, Image.Image]] = []

    def ask(
        self, conversations: Sequence[Conversation], images: Sequence[Image.Image], *, generator=None
    ) -> JudgeOutput:
        if len(conversations) == 0 or len(conversations) != len(images):
            raise ValueError(f"need as many conversations as images (>0), got {len(conversations)}, {len(images)}")
        validate_images(images)
        rows = []
        for conversation, image in zip(conversations, images):
            self.calls.append((list(conversation), image))
            rows.append(self.answer_fn(conversation, image))
        p_yes = torch.tensor([r[0] for r in rows], dtype=torch.float32)
        p_no = torch.tensor([r[1] for r in rows], dtype=torch.float32)
        answers = [r[2].strip().lower() for r in rows]
        return JudgeOutput(
            scores=p_yes,
            components={
                "p_yes": p_yes,
                "p_no": p_no,
                "p_yes_norm": p_yes / (p_yes + p_no).clamp_min(1e-12),
                "answer_yes": torch.tensor([float(a == "yes") for a in answers]),
                "answer_no": torch.tensor([float(a == "no") for a in answers]),
            },
            texts=[r[2] for r in rows],
            cost=JudgeCost(forward_passes=len(rows), images_scored=len(rows)),
        )

    def generate_text(
        self, conversations: Sequence[Conversation], images: Sequence[Image.Image], *, max_new_tokens: int | None = None
    ) -> TextOutput:
        texts = []
        for conversation, image in zip(conversations, images):
            self.text_calls.append((list(conversation), image))
            if self.explain_fn is None:
                texts.append("The image does not match the prompt.")
            else:
                texts.append(self.explain_fn(conversation, image))
        tokens = sum(len(t.split()) for t in texts)
        cost = JudgeCost(forward_passes=len(texts), generated_tokens=tokens, images_scored=len(texts))
        return TextOutput(texts=texts, cost=cost)
