"""WISE judges: the OpenAI-compatible adapter against an in-process fake client (never the network), the retry /
unparsable policies of the loop, and the local VLM judge on a tiny random LLaVA-OneVision."""
from __future__ import annotations

import base64
from types import SimpleNamespace

import pytest
from PIL import Image

from eval.results import Item
from eval.wise.evaluate import score_batch_fn
from eval.wise.judges import JudgeReply, JudgeRequest, LocalVLMJudge, OpenAICompatibleJudge
from eval.wise.prompts import WisePrompt
from eval.wise.rubric import SYSTEM_PROMPT
from reward_models.tiny import build_tiny_llava_onevision
from tests.eval.tiny_models import build_tiny_qwen2_5_vl


class FakeClient:
    """Records every request; answers from a script (strings, or exceptions to raise)."""

    def __init__(self, answers):
        self.answers = list(answers)
        self.calls = []
        self.chat = SimpleNamespace(completions=SimpleNamespace(create=self.create))

    def create(self, **kwargs):
        self.calls.append(kwargs)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return SimpleNamespace(choices=[SimpleNamespace(message=SimpleNamespace(content=answer))])


def request(png=b"\x89PNG fake"):
    return JudgeRequest(Image.new("RGB", (8, 8)), png, "A red apple", "It is red")


def test_openai_adapter_sends_the_official_request():
    client = FakeClient(["Consistency: 2\nRealism: 1\nAesthetic Quality: 1", RuntimeError("rate limit")])
    judge = OpenAICompatibleJudge(client=client)
    replies = judge.judge([request(), request()])
    assert replies[0] == JudgeReply("Consistency: 2\nRealism: 1\nAesthetic Quality: 1", cost={"calls": 1})
    assert replies[1].text is None and replies[1].error == "RuntimeError: rate limit"
    call = client.calls[0]
    assert call["model"] == "gpt-4o-2024-05-13" and call["temperature"] == 0.0 and call["max_tokens"] == 2000
    system, user = call["messages"]
    assert system == {"role": "system", "content": [{"type": "text", "text": SYSTEM_PROMPT}]}
    text, image = user["content"]
    assert 'PROMPT: "A red apple"\nEXPLANATION: "It is red"' in text["text"]
    assert image == {"type": "image_url",
                     "image_url": {"url": "data:image/png;base64," + base64.b64encode(b"\x89PNG fake").decode()}}


def test_openai_adapter_without_client_needs_the_package_and_a_key(monkeypatch):
    monkeypatch.delenv("IMAGECOT_TEST_NO_KEY", raising=False)
    try:
        import openai  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="pip install openai"):
            OpenAICompatibleJudge(api_key_env="IMAGECOT_TEST_NO_KEY")
        return
    with pytest.raises(ValueError, match="IMAGECOT_TEST_NO_KEY"):
        OpenAICompatibleJudge(api_key_env="IMAGECOT_TEST_NO_KEY")


def items(tmp_path, n=2):
    out = []
    for i in range(1, n + 1):
        path = tmp_path / f"{i}.png"
        Image.new("RGB", (8, 8), (i, 0, 0)).save(path)
        out.append(Item(path.name, path, WisePrompt(i, f"prompt {i}", f"explanation {i}", "cultural", "Festival")))
    return out


def test_retries_then_skip_or_zero(tmp_path):
    good = "Consistency: 1\nRealism: 2\nAesthetic Quality: 0"
    # batch: both unparsable; retries: item 1 parses at attempt 2, item 2 fails twice more (error, "??")
    client = FakeClient(["I cannot tell", "??", good, RuntimeError("down"), "??"])
    delays = []
    score = score_batch_fn(OpenAICompatibleJudge(client=client), attempts=3, unparsable="skip", retry_delay_s=5,
                           sleep=delays.append)
    first, second = score(items(tmp_path))
    assert first["attempts"] == 2 and first["wiscore"] == pytest.approx((0.7 + 0.4) / 2) and first["parsed"]
    assert second is None  # three failed attempts: skipped, as official
    assert delays == [5, 5, 5] and len(client.calls) == 5
    zero = score_batch_fn(OpenAICompatibleJudge(client=FakeClient(["??"])), attempts=1, unparsable="zero")
    (rec,) = zero(items(tmp_path, 1))
    assert rec["wiscore"] == 0.0 and rec["parsed"] is False and rec["judge_output"] == "??"
    with pytest.raises(ValueError, match="unparsable policy"):
        score_batch_fn(None, unparsable="drop")


@pytest.mark.parametrize("build", [build_tiny_qwen2_5_vl, build_tiny_llava_onevision], ids=["qwen2_5_vl", "llava_ov"])
def test_local_vlm_judge_generates_text(tmp_path, build):
    # Qwen2.5-VL is the default judge's class; LLaVA-OneVision shows any chat-template VLM plugs in.
    judge = LocalVLMJudge.from_pretrained(build(tmp_path / "vlm"), dtype="float32",
                                          max_new_tokens=8, batch_size=2, device="cpu")
    reqs = [request(), JudgeRequest(Image.new("RGB", (20, 12), (0, 200, 0)), b"", "A green field", "grass")]
    replies = judge.judge(reqs)
    assert len(replies) == 2 and all(isinstance(r.text, str) for r in replies)
    assert all(1 <= r.cost["generated_tokens"] <= 8 for r in replies)
    assert [r.text for r in judge.judge(reqs[1:])] == [replies[1].text]  # greedy and batch-independent
