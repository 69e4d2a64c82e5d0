"""WISE judges: one small protocol, a local VLM through transformers (default) and an OpenAI-compatible adapter.

A judge maps requests (image, its PNG bytes, prompt, explanation) to raw answer texts; parsing, retries and the
WiScore live in the evaluation loop, so every judge is scored the same way. Selected in Hydra with ``_target_``
(``configs/wise_judge/``). The official judge is ``gpt-4o-2024-05-13`` at temperature 0 (reference §7.2): use
:class:`OpenAICompatibleJudge` for it (off by default; never called in tests). A local judge is not comparable with
GPT-4o numbers; calibrate it on models with published scores (docs/benchmarks.md).
"""
from __future__ import annotations

import base64
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, Sequence

import torch
from PIL import Image

from eval.wise.rubric import SYSTEM_PROMPT, render_rubric

__all__ = ["JudgeReply", "JudgeRequest", "LocalVLMJudge", "OpenAICompatibleJudge", "WiseJudge"]


@dataclass(frozen=True)
class JudgeRequest:
    image: Image.Image
    png: bytes  # the image file's bytes (sent as-is to API judges, as the official script does)
    prompt: str
    explanation: str


@dataclass(frozen=True)
class JudgeReply:
    text: str | None  # None: the call failed
    error: str | None = None
    cost: dict[str, int] = field(default_factory=dict)


class WiseJudge(Protocol):
    def judge(self, requests: Sequence[JudgeRequest]) -> list[JudgeReply]: ...


def chat(request: JudgeRequest, image_item: dict[str, Any]) -> list[dict[str, Any]]:
    """The official conversation: a system line, then one user turn [rubric text, image]."""
    return [
        {"role": "system", "content": [{"type": "text", "text": SYSTEM_PROMPT}]},
        {"role": "user", "content": [{"type": "text", "text": render_rubric(request.prompt, request.explanation)},
                                     image_item]},
    ]


class LocalVLMJudge:
    """Any transformers image-text-to-text model (Qwen2.5-VL, LLaVA-OneVision, ...) with its processor's chat
    template; greedy decoding, so a retry repeats the answer (the loop's ``attempts`` should be 1).

    Args:
        model: an ``AutoModelForImageTextToText`` model.
        processor: its processor (image resolution fixed by its config, e.g. Qwen's ``min_pixels``/``max_pixels``).
        max_new_tokens: answer budget (the three-line answer needs ~20 tokens; 64 leaves room for chatter).
        batch_size: requests per ``generate`` call.
    """

    def __init__(self, model, processor, *, max_new_tokens: int = 64, batch_size: int = 4,
                 device: str | torch.device = "cpu"):
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.processor = processor
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size
        tokenizer = getattr(processor, "tokenizer", processor)
        tokenizer.padding_side = "left"  # batched generation continues every row at the same position

    @classmethod
    def from_pretrained(cls, path: str | Path, *, dtype: str = "auto", processor_kwargs: dict | None = None,
                        **kwargs) -> LocalVLMJudge:
        """Load a local HF directory (nothing is downloaded); ``processor_kwargs`` e.g. ``{max_pixels: 802816}``."""
        from transformers import AutoModelForImageTextToText, AutoProcessor

        path = Path(path)
        if not path.is_dir():
            raise FileNotFoundError(f"judge directory not found: {path} (local paths only; nothing is downloaded)")
        model = AutoModelForImageTextToText.from_pretrained(path, dtype=dtype)
        processor = AutoProcessor.from_pretrained(path, **(processor_kwargs or {}))
        return cls(model, processor, **kwargs)

    @torch.no_grad()
    def judge(self, requests: Sequence[JudgeRequest]) -> list[JudgeReply]:
        replies = []
        for start in range(0, len(requests), self.batch_size):
            batch = requests[start:start + self.batch_size]
            texts = [self.processor.apply_chat_template(chat(r, {"type": "image"}), add_generation_prompt=True,
                                                        tokenize=False) for r in batch]
            inputs = self.processor(text=texts, images=[r.image for r in batch], return_tensors="pt",
                                    padding=True).to(self.device)
            out = self.model.generate(**inputs, do_sample=False, max_new_tokens=self.max_new_tokens)
            new = out[:, inputs["input_ids"].shape[1]:]
            for row in new:
                text = self.processor.decode(row, skip_special_tokens=True).strip()
                replies.append(JudgeReply(text, cost={"calls": 1, "generated_tokens": int(row.numel())}))
        return replies


class OpenAICompatibleJudge:
    """An OpenAI-compatible chat endpoint (the official GPT-4o judge): one request per image, temperature 0.

    Args:
        model: ``gpt-4o-2024-05-13`` for the paper setting.
        base_url: the endpoint (None: the client's default).
        api_key_env: environment variable holding the key (never stored in configs or results).
        client: a ready client with ``chat.completions.create`` (tests pass an in-process fake); default builds
            ``openai.OpenAI`` (``pip install openai``).
    """

    def __init__(self, model: str = "gpt-4o-2024-05-13", *, base_url: str | None = None,
                 api_key_env: str = "OPENAI_API_KEY", client=None, temperature: float = 0.0, max_tokens: int = 2000):
        self.model = model
        self.temperature = temperature
        self.max_tokens = max_tokens
        if client is None:
            try:
                import openai
            except ImportError as err:
                raise ImportError("OpenAICompatibleJudge needs the openai package: pip install openai") from err
            key = os.environ.get(api_key_env)
            if not key:
                raise ValueError(f"environment variable {api_key_env} holds no API key")
            client = openai.OpenAI(api_key=key, base_url=base_url)
        self.client = client

    def judge(self, requests: Sequence[JudgeRequest]) -> list[JudgeReply]:
        replies = []
        for r in requests:
            url = "data:image/png;base64," + base64.b64encode(r.png).decode("ascii")
            try:
                response = self.client.chat.completions.create(
                    model=self.model, messages=chat(r, {"type": "image_url", "image_url": {"url": url}}),
                    temperature=self.temperature, max_tokens=self.max_tokens)
                replies.append(JudgeReply(response.choices[0].message.content, cost={"calls": 1}))
            except Exception as err:  # noqa: BLE001 -- any API failure is retried by the loop, then skipped
                replies.append(JudgeReply(None, error=f"{type(err).__name__}: {err}", cost={"calls": 1}))
        return replies
