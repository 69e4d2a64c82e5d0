"""Judge training data builders, JSONL round trip and validation errors."""
from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
from PIL import Image

from reward_models import questions
from reward_models.data import (
    JudgeDataset,
    clarity_example,
    clarity_label,
    orm_example,
    potential_example,
    read_examples,
    reflection_example,
    save_image,
    write_examples,
)


@dataclass
class V:
    correct: bool
    reason: str = ""


def test_orm_example_uses_orm_question():
    ex = orm_example("a", "a red car", "images/a.png", V(True))
    assert ex.task == "orm"
    assert ex.conversation[0]["content"] == questions.ORM_QUESTION.format(image="<image>", prompt="a red car")
    assert ex.conversation[1] == {"role": "assistant", "content": "yes"}
    assert orm_example("b", "x", "b.png", V(False), answers=("Yes", "No")).conversation[1]["content"] == "No"


def test_clarity_rule_of_the_paper():
    # §6.4: steps after 11 -> yes, before 10 -> no, 10 and 11 unlabelled (1-based, 18 steps).
    labels = {step: clarity_label(step) for step in range(1, 19)}
    assert [s for s, v in labels.items() if v is True] == list(range(12, 19))
    assert [s for s, v in labels.items() if v is False] == list(range(1, 10))
    assert [s for s, v in labels.items() if v is None] == [10, 11]
    assert clarity_example("c", "p", "i.png", 10) is None
    assert clarity_example("c", "p", "i.png", 12).conversation[1]["content"] == "yes"
    assert clarity_example("c", "p", "i.png", 3).conversation[1]["content"] == "no"
    with pytest.raises(ValueError, match="1-based"):
        clarity_label(0)


def test_potential_is_follow_up_after_clear_yes():
    assert potential_example("p", "two dogs", "i.png", 11, V(True)) is None
    ex = potential_example("p", "two dogs", "i.png", 14, V(False))
    roles = [t["role"] for t in ex.conversation]
    assert roles == ["user", "assistant", "user", "assistant"]
    assert ex.conversation[0]["content"].startswith("<image>")
    assert ex.conversation[1]["content"] == "yes"
    assert ex.conversation[2]["content"] == questions.POTENTIAL_CODE and "<image>" not in ex.conversation[2]["content"]
    assert ex.conversation[3]["content"] == "no"


def test_reflection_explains_rejections():
    ok = reflection_example("r", "a cat", "i.png", V(True))
    assert [t["content"] for t in ok.conversation[1:]] == ["yes"]
    bad = reflection_example("r", "a cat", "i.png", V(False, "expected cat>=1, found 0\nwrong color\n"))
    assert bad.conversation[1]["content"] == "no"
    assert bad.conversation[2]["content"] == questions.REFLECTION_EXPLAIN.format(image="", prompt="a cat").lstrip()
    assert bad.conversation[3]["content"] == "expected cat>=1, found 0; wrong color"
    with pytest.raises(ValueError, match="reason"):
        reflection_example("r", "a cat", "i.png", V(False, "  "))


def test_round_trip_and_dataset(tmp_path):
    rel = save_image(Image.new("RGB", (8, 8), (1, 2, 3)), tmp_path, "img0")
    examples = [orm_example(f"e{i}", "a dog", rel, V(i % 2 == 0)) for i in range(10)]
    path = tmp_path / "orm.jsonl"
    assert write_examples(path, examples) == 10
    assert read_examples(path) == examples
    dataset = JudgeDataset([path])
    conversation, image = dataset[3]
    assert conversation[1]["content"] == "no" and image.size == (8, 8) and image.mode == "RGB"
    half = JudgeDataset([path], fractions=[0.5], seed=3)
    assert len(half) == 5
    assert [e.id for _, e in half.items] == [e.id for _, e in JudgeDataset([path], fractions=[0.5], seed=3).items]


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda r: r.pop("image"), "missing field 'image'"),
        (lambda r: r.update(task="rank"), "field 'task' = 'rank'"),
        (lambda r: r["conversation"][0].update(role="assistant"), "conversation\\[0\\].role"),
        (lambda r: r["conversation"][0].update(content="no placeholder"), "exactly one '<image>'"),
        (lambda r: r["conversation"].pop(), ">= 2 turns"),
        (lambda r: r.update(image="images/none.png"), "none.png"),
    ],
)
def test_validation_names_line_and_field(tmp_path, mutate, message):
    rel = save_image(Image.new("RGB", (8, 8)), tmp_path, "img")
    good = orm_example("g", "a dog", rel, V(True)).to_json()
    bad = json.loads(json.dumps(good))
    mutate(bad)
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
    with pytest.raises((ValueError, FileNotFoundError), match=message) as info:
        read_examples(path)
    assert f"{path}:2" in str(info.value)


def test_invalid_json_line(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text("{not json\n")
    with pytest.raises(ValueError, match=r"d.jsonl:1: not valid JSON"):
        read_examples(path)
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        read_examples(tmp_path / "nope.jsonl")
