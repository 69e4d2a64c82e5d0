"""The LMM yes/no judge: LLaVA-OneVision asked a yes/no question about an image (paper §3, reference §3 and §17).

Scoring primitive: render the ``qwen_1_5`` conversation, run **one forward pass**, read the logits of the first
answer token and report

* ``p_yes`` — softmax over the **full vocabulary**, summed over the token ids of the configured "yes" variants
  (default ``yes`` and ``Yes``: the released code reads lowercase ``yes`` only, while the paper's training data
  answers ``Yes``; summing both makes the score robust to either casing). This is the score;
* ``p_no`` — the same for the "no" variants;
* ``p_yes_norm`` — ``p_yes / (p_yes + p_no)``, the yes-vs-no normalised variant;
* ``answer_yes`` / ``answer_no`` — the decision. ``mode="prob"`` (default, deterministic) answers yes iff
  ``p_yes > p_no`` (fix of bug #5). ``mode="sample"`` reproduces the released behaviour: the first token is
  sampled at temperature 1 (from the plain softmax; the released code's generation config may add a top-k,
  bug #6) with a ``torch.Generator``; an answer that is neither yes nor no sets both decisions to 0.

Batches are left-padded with position ids taken from the attention mask, so a batch equals its singletons.

Follow-up turns (opt-in): ``ask_keeping_cache`` answers like ``ask`` and keeps the key/value cache of every
conversation (:class:`TurnCache`); ``ask_follow_up`` then asks a conversation that *extends* a cached one (e.g.
PARM's potential question after the clarity turn and an assistant "yes", reference §6.3) by running only the new
tokens on that cache, so the image and the first question are not encoded again. The scores equal the uncached
``ask`` of the full conversation up to float rounding (tested in float64 against it).

Image view (``image_view``): ``"anyres"`` is transformers' LLaVA-OneVision preprocessing (a base view plus tiles of
the best grid pinpoint, about 1.5K visual tokens at 384 px). ``"pad"`` is what the released judges ran at inference
(LLaVA-NeXT ``image_aspect_ratio="pad"``, reference §3 and bug #10): the image padded to a square with the
processor's mean colour, resized to the vision tower's size (bicubic), one view of ``(size / patch)^2`` features
followed by the ``image_newline`` embedding (730 visual tokens at 384 px). ``None`` reads the view recorded in the
directory by :mod:`reward_models.convert` (``"pad"`` for converted released judges), else ``"anyres"``.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm
from transformers import DynamicCache, LlavaOnevisionForConditionalGeneration, LlavaOnevisionProcessor

from reward_models.base import (
    Conversation,
    Generators,
    JudgeCost,
    JudgeOutput,
    TextOutput,
    concat_outputs,
    per_image_generators,
    validate_images,
    validate_judge_inputs,
    validate_step,
)
from reward_models.local_model import load_local, torch_dtype
from reward_models.questions import ORM_QUESTION, render_question
from reward_models.tiny import QWEN_1_5_CHAT_TEMPLATE

__all__ = ["IMAGE_VIEWS", "JUDGE_INFO", "LMMYesNoJudge", "TurnCache", "check_judge_directory", "pad_to_square",
           "question_turns", "recorded_view", "user_turn"]

_MODES = ("prob", "sample")
IMAGE_VIEWS = ("anyres", "pad")
JUDGE_INFO = "imagecot_judge.json"  # written next to a converted judge: its origin and the view it was used with


def check_judge_directory(model_dir: str | Path) -> Path:
    """Raise ``FileNotFoundError`` naming the first missing file of a local HF LLaVA-OneVision directory."""
    path = Path(model_dir).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"judge directory not found: {path} (judges load local directories only)")
    required = {
        "config.json": ["config.json"],
        "safetensors weights": ["model.safetensors", "model.safetensors.index.json"],
        "tokenizer": ["tokenizer.json", "tokenizer_config.json"],
        "processor config": ["processor_config.json", "preprocessor_config.json"],
    }
    for what, names in required.items():
        if not any((path / name).is_file() for name in names):
            raise FileNotFoundError(f"judge directory {path} has no {what}: expected one of {names}")
    return path


def recorded_view(model_dir: str | Path) -> str:
    """The image view recorded in ``model_dir/imagecot_judge.json`` (converted released judges: ``"pad"``), else
    ``"anyres"`` (transformers' own preprocessing, e.g. for judges trained here)."""
    path = Path(model_dir) / JUDGE_INFO
    if not path.is_file():
        return "anyres"
    view = json.loads(path.read_text()).get("image_view", "anyres")
    if view not in IMAGE_VIEWS:
        raise ValueError(f"{path}: field 'image_view' is {view!r}, expected one of {IMAGE_VIEWS}")
    return view


def pad_to_square(image: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    """LLaVA-NeXT's ``expand2square``: the image centred on a square canvas of its longer side."""
    width, height = image.size
    if width == height:
        return image
    side = max(width, height)
    canvas = Image.new(image.mode, (side, side), background)
    canvas.paste(image, ((side - width) // 2, (side - height) // 2))
    return canvas


def user_turn(template: str, prompt: str, image_token: str | None) -> dict[str, str]:
    """A user message from a question template; ``image_token=None`` makes it text-only."""
    return {"role": "user", "content": render_question(template, prompt, image_token)}


def question_turns(template: str, prompts: Sequence[str], image_token: str | None) -> list[Conversation]:
    """One single-turn conversation per prompt: the question ``template`` asked about that prompt."""
    return [[user_turn(template, p, image_token)] for p in prompts]


@dataclass
class TurnCache:
    """What :meth:`LMMYesNoJudge.ask_keeping_cache` keeps of B conversations for a follow-up turn.

    Attributes:
        texts: B rendered conversations (ending with the assistant's generation prompt).
        rows: B ``(chunk, row)`` pairs locating each conversation in ``chunks``.
        chunks: one per forward batch: its per-layer keys / values ``[b, H, L, D]``, its attention mask ``[b, L]``
            (left padding = 0) and each row's next position ``[b]`` (its number of real tokens).
    """

    texts: list[str]
    rows: list[tuple[int, int]]
    chunks: list[tuple[list[tuple[torch.Tensor, torch.Tensor]], torch.Tensor, torch.Tensor]]


class LMMYesNoJudge:
    """LLaVA-OneVision yes/no judge loaded from a local HF directory.

    Implements :class:`~reward_models.base.YesNoJudge` (``ask``, ``generate_text``), and with its own
    ``question_template`` also :class:`~reward_models.base.OutcomeJudge` and
    :class:`~reward_models.base.ProcessJudge`.

    Args:
        model_dir: local directory in transformers' llava-onevision format (see ``check_judge_directory``).
        dtype: torch dtype name of the weights, e.g. ``"float32"``, ``"bfloat16"`` (fp16 in the released code).
        device: where the model runs.
        question_template: question used by ``score`` / ``score_steps`` (default: the ORM question, §4.1).
        batch_size: conversations per forward pass.
        mode: ``"prob"`` (deterministic decisions) or ``"sample"`` (released behaviour, needs a generator).
        yes_words, no_words: answer variants whose single-token probabilities are summed.
        seed: seed of the judge's own generator, used in ``"sample"`` mode when no generator is passed.
        max_new_tokens: default length of ``generate_text``.
        chat_template: Jinja chat template; ``None`` uses the one saved with the processor.
        image_view: ``"anyres"``, ``"pad"`` (the released judges' single padded view) or ``None`` (the view recorded
            in ``model_dir``, see :func:`recorded_view`).
    """

    def __init__(
        self,
        model_dir: str | Path,
        dtype: str = "float32",
        device: str = "cpu",
        question_template: str | None = None,
        batch_size: int = 8,
        mode: str = "prob",
        yes_words: Sequence[str] = ("yes", "Yes"),
        no_words: Sequence[str] = ("no", "No"),
        seed: int = 0,
        max_new_tokens: int = 128,
        chat_template: str | None = QWEN_1_5_CHAT_TEMPLATE,
        image_view: str | None = None,
    ) -> None:
        if image_view is not None and image_view not in IMAGE_VIEWS:
            raise ValueError(f"LMMYesNoJudge.image_view must be one of {IMAGE_VIEWS} or None, got {image_view!r}")
        if mode not in _MODES:
            raise ValueError(f"LMMYesNoJudge.mode must be one of {_MODES}, got {mode!r}")
        if batch_size < 1:
            raise ValueError(f"LMMYesNoJudge.batch_size must be >= 1, got {batch_size}")
        weights_dtype = torch_dtype(dtype, "LMMYesNoJudge.dtype")
        self.model_dir = check_judge_directory(model_dir)
        self.image_view = image_view or recorded_view(self.model_dir)
        self.processor, self.model = load_local(
            LlavaOnevisionForConditionalGeneration, LlavaOnevisionProcessor, self.model_dir, dtype=weights_dtype,
            device=device,
        )
        self.device = torch.device(device)
        self.question_template = ORM_QUESTION if question_template is None else question_template
        self.batch_size = batch_size
        self.mode = mode
        self.max_new_tokens = max_new_tokens
        self.chat_template = chat_template
        self.image_token = self.processor.image_token
        self.tokenizer = self.processor.tokenizer
        # Left padding puts every first answer position at index -1, so one logits slice serves the batch.
        self.tokenizer.padding_side = "left"
        self.yes_ids = self._single_token_ids(yes_words, "yes_words")
        self.no_ids = self._single_token_ids(no_words, "no_words")
        if set(self.yes_ids) & set(self.no_ids):
            raise ValueError(f"yes_words {list(yes_words)} and no_words {list(no_words)} share a token id")
        self._generator = torch.Generator().manual_seed(seed)

    def _single_token_ids(self, words: Sequence[str], field_name: str) -> list[int]:
        if isinstance(words, str) or len(words) == 0:
            raise ValueError(f"LMMYesNoJudge.{field_name} must be a non-empty list of words, got {words!r}")
        ids = []
        for word in words:
            tokens = self.tokenizer.encode(word, add_special_tokens=False)
            if len(tokens) != 1:
                raise ValueError(
                    f"LMMYesNoJudge.{field_name}: {word!r} is {len(tokens)} tokens in {self.model_dir}; "
                    "answer variants must be single tokens"
                )
            ids.append(tokens[0])
        return sorted(set(ids))

    # ---------------------------------------------------------------- OutcomeJudge / ProcessJudge
    def score(
        self,
        prompts: Sequence[str],
        images: Sequence[Image.Image],
        *,
        question_template: str | None = None,
        generator: Generators = None,
    ) -> JudgeOutput:
        """P("yes") of ``question_template`` (default: this judge's) for each ``(prompt, image)``; scores ``[B]``."""
        validate_judge_inputs(prompts, images)
        template = self.question_template if question_template is None else question_template
        return self.ask(question_turns(template, prompts, self.image_token), images, generator=generator)

    def score_steps(
        self, prompts: Sequence[str], step_images: Sequence[Image.Image], step: int, num_steps: int
    ) -> JudgeOutput:
        """Score intermediate predicted images with this judge's question (the step does not enter the question)."""
        validate_step(step, num_steps)
        validate_judge_inputs(prompts, step_images, images_name="step_images")
        return self.score(prompts, step_images)

    # ---------------------------------------------------------------- YesNoJudge
    def render(self, conversation: Conversation) -> str:
        """The chat-template text of one conversation, ending with the assistant's generation prompt."""
        text = self.processor.apply_chat_template(
            [{"role": m["role"], "content": [{"type": "text", "text": m["content"]}]} for m in conversation],
            chat_template=self.chat_template,
            tokenize=False,
            add_generation_prompt=True,
        )
        if text.count(self.image_token) != 1:
            raise ValueError(
                f"a judge conversation must hold exactly one {self.image_token!r} placeholder, found "
                f"{text.count(self.image_token)} in: {text!r}"
            )
        return text

    def build_inputs(self, conversations: Sequence[Conversation], images: Sequence[Image.Image]) -> dict:
        """Model inputs of a batch, left-padded, with ``position_ids`` counted over real tokens: the processor's
        ``input_ids`` ``[B, L]`` and ``pixel_values`` (``anyres``), or ``inputs_embeds`` ``[B, L, D]`` with the padded
        view's features in place (``pad``)."""
        texts = [self.render(c) for c in conversations]
        if self.image_view == "pad":
            batch = self._pad_view_inputs(texts, images)
        else:
            batch = self.processor(text=texts, images=list(images), padding=True, return_tensors="pt")
            batch = {k: v.to(self.device) for k, v in batch.items()}
            if "pixel_values" in batch:
                batch["pixel_values"] = batch["pixel_values"].to(self.model.dtype)
        # Positions count real tokens only, so left padding does not shift RoPE phases (batch == singletons).
        batch["position_ids"] = (batch["attention_mask"].long().cumsum(-1) - 1).clamp(min=0)
        return batch

    def pad_view_pixels(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """``[B, 3, S, S]``: each image padded to a square with the mean colour, resized to ``S`` (bicubic), rescaled
        to [0, 1] and normalised, as LLaVA-NeXT's ``process_images`` with ``image_aspect_ratio="pad"``."""
        ip = self.processor.image_processor
        side = self.model.config.vision_config.image_size
        mean, std = np.asarray(ip.image_mean, np.float32), np.asarray(ip.image_std, np.float32)
        background = tuple(int(m * 255) for m in ip.image_mean)
        arrays = [np.asarray(pad_to_square(im.convert("RGB"), background).resize((side, side), Image.BICUBIC),
                             np.float32) / 255.0 for im in images]
        return torch.from_numpy(((np.stack(arrays) - mean) / std).transpose(0, 3, 1, 2).copy())

    def _pad_view_inputs(self, texts: Sequence[str], images: Sequence[Image.Image]) -> dict:
        config = self.model.config
        if not isinstance(config.vision_feature_layer, int):
            raise ValueError(f"{self.model_dir}: the pad view needs one vision_feature_layer, got "
                             f"{config.vision_feature_layer!r}")
        per_image = (config.vision_config.image_size // config.vision_config.patch_size) ** 2 + 1  # + image_newline
        texts = [t.replace(self.image_token, self.image_token * per_image) for t in texts]
        tokens = self.tokenizer(texts, padding=True, return_tensors="pt").to(self.device)
        inner = self.model.model
        pixels = self.pad_view_pixels(images).to(self.device, self.model.dtype)
        hidden = inner.vision_tower(pixels, output_hidden_states=True).hidden_states[config.vision_feature_layer]
        if config.vision_feature_select_strategy == "default":
            hidden = hidden[:, 1:]  # drop a CLS position (SigLIP has none: "full")
        features = inner.multi_modal_projector(hidden)  # [B, P, D]
        newline = inner.image_newline.to(features)[None, None].expand(len(texts), 1, -1)
        features = torch.cat([features, newline], dim=1)  # [B, P + 1, D]
        embeds = inner.get_input_embeddings()(tokens["input_ids"])
        slots = (tokens["input_ids"] == config.image_token_id).unsqueeze(-1)
        embeds = embeds.masked_scatter(slots.expand_as(embeds), features.to(embeds.dtype))
        return {"inputs_embeds": embeds, "attention_mask": tokens["attention_mask"]}

    @torch.inference_mode()
    def first_token_logits(self, conversations: Sequence[Conversation], images: Sequence[Image.Image]) -> torch.Tensor:
        """Float32 logits ``[B, V]`` of the first answer token, on the CPU."""
        batch = self.build_inputs(conversations, images)
        out = self.model(**batch, logits_to_keep=1, use_cache=False)
        return out.logits[:, -1, :].float().cpu()

    def ask(
        self, conversations: Sequence[Conversation], images: Sequence[Image.Image], *, generator: Generators = None
    ) -> JudgeOutput:
        """Yes/no judgment of each conversation about its image; ``scores`` = ``p_yes`` ``[B]``.

        ``generator`` (one, or one per conversation) drives the sampled answers of ``mode="sample"``; it is unused in
        ``mode="prob"``. ``texts`` holds the sampled answer tokens in sample mode, ``None`` otherwise.
        """
        return self._ask(conversations, images, generator, keep_cache=False)[0]

    def ask_keeping_cache(
        self,
        conversations: Sequence[Conversation],
        images: Sequence[Image.Image],
        *,
        generator: Generators = None,
    ) -> tuple[JudgeOutput, TurnCache]:
        """:meth:`ask`, plus the key/value cache of every conversation for :meth:`ask_follow_up` (same scores and
        decisions as ``ask``: the forward pass is the same, it only returns its cache)."""
        return self._ask(conversations, images, generator, keep_cache=True)  # type: ignore[return-value]

    def _ask(self, conversations, images, generator, keep_cache: bool) -> tuple[JudgeOutput, TurnCache | None]:
        if len(conversations) == 0:
            raise ValueError("conversations is empty: a judge needs at least one (conversation, image) pair")
        if len(conversations) != len(images):
            raise ValueError(f"len(conversations)={len(conversations)} != len(images)={len(images)}")
        validate_images(images)
        generators = self._generators(generator, len(conversations))
        outputs = []
        cache = TurnCache(texts=[], rows=[], chunks=[]) if keep_cache else None
        starts = range(0, len(conversations), self.batch_size)
        for start in tqdm(starts, desc="judge", disable=len(starts) < 4, leave=False):
            end = start + self.batch_size
            if cache is None:
                logits = self.first_token_logits(conversations[start:end], images[start:end])
            else:
                logits = self._logits_keeping_cache(conversations[start:end], images[start:end], cache)
            outputs.append(self._judge_logits(logits, generators[start:end] if generators else None))
        return concat_outputs(outputs), cache

    @torch.inference_mode()
    def _logits_keeping_cache(
        self, conversations: Sequence[Conversation], images: Sequence[Image.Image], cache: TurnCache
    ) -> torch.Tensor:
        """:meth:`first_token_logits` of one batch, appending the batch's keys / values to ``cache``."""
        batch = self.build_inputs(conversations, images)
        out = self.model(**batch, logits_to_keep=1, use_cache=True)
        layers = [(layer.keys, layer.values) for layer in out.past_key_values.layers]
        chunk = len(cache.chunks)
        cache.chunks.append((layers, batch["attention_mask"], batch["position_ids"][:, -1] + 1))
        cache.rows.extend((chunk, row) for row in range(len(conversations)))
        cache.texts.extend(self.render(c) for c in conversations)
        return out.logits[:, -1, :].float().cpu()

    def ask_follow_up(
        self,
        cache: TurnCache,
        rows: Sequence[int],
        conversations: Sequence[Conversation],
        *,
        generator: Generators = None,
    ) -> JudgeOutput:
        """Judge ``conversations[k]``, which must extend cached conversation ``rows[k]`` by further turns without an
        image, running only the new tokens on the cached keys / values (scores ``[K]`` as :meth:`ask` of the full
        conversations, up to float rounding; sampled answers draw from ``generator`` in the same order).

        Raises ``ValueError`` when a conversation does not extend its cached one or the new text does not start at a
        token boundary (then tokenising it apart would not give the tokens of the full conversation).
        """
        if len(rows) == 0 or len(rows) != len(conversations):
            raise ValueError(f"ask_follow_up needs one cached row per conversation (>0), got {len(rows)} rows for "
                             f"{len(conversations)} conversations")
        bad = [r for r in rows if not 0 <= r < len(cache.rows)]
        if bad:
            raise ValueError(f"ask_follow_up: rows {bad} are not in the cache of {len(cache.rows)} conversations")
        suffixes = [self._follow_up_ids(cache.texts[r], c, r) for r, c in zip(rows, conversations)]
        groups: dict[tuple[int, int], list[int]] = {}
        for k, r in enumerate(rows):  # one forward per (cache chunk, new-token count): no padding inside a turn
            groups.setdefault((cache.rows[r][0], len(suffixes[k])), []).append(k)
        order, parts = [], []
        for (chunk, _), ks in groups.items():
            order.extend(ks)
            parts.append(self._follow_up_logits(cache.chunks[chunk], [cache.rows[rows[k]][1] for k in ks],
                                                [suffixes[k] for k in ks]))
        logits = torch.cat(parts)[torch.argsort(torch.tensor(order))]  # back to the order of ``rows``
        generators = self._generators(generator, len(rows))
        return self._judge_logits(logits, generators)

    def _follow_up_ids(self, cached_text: str, conversation: Conversation, row: int) -> list[int]:
        text = self.render(conversation)
        if not text.startswith(cached_text) or len(text) == len(cached_text):
            raise ValueError(f"ask_follow_up: conversation for cached row {row} does not extend the cached one "
                             f"(rendered: {text!r}; cached: {cached_text!r})")
        new = self.tokenizer(text[len(cached_text):], add_special_tokens=False)["input_ids"]
        old = self.tokenizer(cached_text, add_special_tokens=False)["input_ids"]
        if self.tokenizer(text, add_special_tokens=False)["input_ids"] != old + new:
            raise ValueError(f"ask_follow_up: the follow-up of cached row {row} does not start at a token boundary "
                             f"of {self.model_dir}'s tokenizer; ask the full conversation instead")
        return new

    @torch.inference_mode()
    def _follow_up_logits(self, chunk, rows: list[int], suffixes: list[list[int]]) -> torch.Tensor:
        """First-answer logits ``[K, V]`` of K follow-ups of equal length on rows ``rows`` of one cached chunk."""
        layers, mask, next_pos = chunk
        index = torch.tensor(rows, device=mask.device)
        # A fresh cache of the selected rows: the forward appends to it, the kept chunk stays reusable.
        past = DynamicCache(ddp_cache_data=[(k.index_select(0, index), v.index_select(0, index)) for k, v in layers])
        ids = torch.tensor(suffixes, device=self.device)
        new = ids.shape[1]
        attention_mask = torch.cat([mask.index_select(0, index), mask.new_ones(len(rows), new)], dim=1)
        position_ids = next_pos.index_select(0, index)[:, None] + torch.arange(new, device=mask.device)
        out = self.model(input_ids=ids, attention_mask=attention_mask, position_ids=position_ids,
                         past_key_values=past, logits_to_keep=1, use_cache=True)
        return out.logits[:, -1, :].float().cpu()

    def _judge_logits(self, logits: torch.Tensor, generators: list[torch.Generator] | None) -> JudgeOutput:
        """Turn first-token logits ``[B, V]`` into probabilities and decisions."""
        probs = torch.softmax(logits, dim=-1)
        p_yes = probs[:, self.yes_ids].sum(-1)
        p_no = probs[:, self.no_ids].sum(-1)
        p_yes_norm = p_yes / (p_yes + p_no).clamp_min(torch.finfo(probs.dtype).tiny)
        texts = None
        if generators is None:
            answer_yes = (p_yes > p_no).float()
            answer_no = 1.0 - answer_yes
        else:
            # One draw per row with that row's generator, so a batch equals its singletons.
            tokens = [int(torch.multinomial(row, 1, generator=g)) for row, g in zip(probs, generators)]
            answer_yes = torch.tensor([float(t in self.yes_ids) for t in tokens])
            answer_no = torch.tensor([float(t in self.no_ids) for t in tokens])
            texts = [self.tokenizer.decode([t]) for t in tokens]
        batch = logits.shape[0]
        return JudgeOutput(
            scores=p_yes,
            components={
                "p_yes": p_yes,
                "p_no": p_no,
                "p_yes_norm": p_yes_norm,
                "answer_yes": answer_yes,
                "answer_no": answer_no,
            },
            texts=texts,
            cost=JudgeCost(forward_passes=batch, images_scored=batch),
        )

    def _generators(self, generator: Generators, count: int) -> list[torch.Generator] | None:
        if self.mode == "prob":
            return None
        return per_image_generators(generator, count, self._generator, what="conversations")

    @torch.inference_mode()
    def generate_text(
        self,
        conversations: Sequence[Conversation],
        images: Sequence[Image.Image],
        *,
        max_new_tokens: int | None = None,
    ) -> TextOutput:
        """Greedy answers (explanations); the cost counts generated tokens up to and including end-of-turn."""
        if len(conversations) == 0 or len(conversations) != len(images):
            raise ValueError(f"need as many conversations as images (>0), got {len(conversations)}, {len(images)}")
        validate_images(images)
        limit = self.max_new_tokens if max_new_tokens is None else max_new_tokens
        texts: list[str] = []
        cost = JudgeCost()
        for start in range(0, len(conversations), self.batch_size):
            end = start + self.batch_size
            batch = self.build_inputs(conversations[start:end], images[start:end])
            batch.pop("position_ids")  # generate derives positions from the attention mask itself
            # generate returns prompt + answer from input_ids, the answer alone from inputs_embeds (pad view)
            prompt_len = batch["input_ids"].shape[1] if "input_ids" in batch else 0
            out = self.model.generate(
                **batch,
                do_sample=False,
                max_new_tokens=limit,
                pad_token_id=self.tokenizer.pad_token_id,
                eos_token_id=self.tokenizer.eos_token_id,
            )
            for row in out[:, prompt_len:].tolist():
                length = _length_to_eos(row, self.tokenizer.eos_token_id, limit)
                texts.append(self.tokenizer.decode(row[:length], skip_special_tokens=True).strip())
                cost = cost + JudgeCost(forward_passes=1, generated_tokens=length, images_scored=1)
        return TextOutput(texts=texts, cost=cost)


def _length_to_eos(row: list[int], eos_id: int, limit: int) -> int:
    """Generated tokens up to and including the first end-of-turn token (padding after it is not counted)."""
    return row.index(eos_id) + 1 if eos_id in row else min(len(row), limit)
