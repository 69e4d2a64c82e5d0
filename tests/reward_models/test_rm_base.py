"""Judge protocols, JudgeOutput / JudgeCost and input validation (reward_models/base.py)."""
from __future__ import annotations

import pytest
import torch
from PIL import Image

from reward_models.base import (
    JudgeCost,
    JudgeOutput,
    OutcomeJudge,
    ProcessJudge,
    TextOutput,
    YesNoJudge,
    concat_outputs,
    validate_images,
    validate_judge_inputs,
    validate_step,
)
from reward_models.tiny import ScriptedYesNoJudge


def _rgb(size=(8, 8)):
    return Image.new("RGB", size, (10, 20, 30))


def test_cost_addition_and_sum():
    a = JudgeCost(forward_passes=2, generated_tokens=5, images_scored=2)
    b = JudgeCost(forward_passes=1, generated_tokens=0, images_scored=3)
    assert a + b == JudgeCost(3, 5, 5)
    assert sum([a, b, b]) == JudgeCost(4, 5, 8)
    assert (a + b).as_dict() == {"forward_passes": 3, "generated_tokens": 5, "images_scored": 5}


def test_output_shape_checks():
    JudgeOutput(scores=torch.zeros(3), components={"p": torch.ones(3)}, texts=["a", "b", "c"])
    with pytest.raises(ValueError, match="1-D"):
        JudgeOutput(scores=torch.zeros(3, 1))
    with pytest.raises(ValueError, match="floating"):
        JudgeOutput(scores=torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="components\\['p'\\]"):
        JudgeOutput(scores=torch.zeros(3), components={"p": torch.ones(2)})
    with pytest.raises(ValueError, match="texts has 2"):
        JudgeOutput(scores=torch.zeros(3), texts=["a", "b"])


def test_concat_and_take():
    components = {"x": torch.tensor([1.0, 2.0]), "y": torch.zeros(2)}
    a = JudgeOutput(torch.tensor([0.1, 0.2]), components, ["a", "b"], JudgeCost(2, 0, 2))
    b = JudgeOutput(torch.tensor([0.3]), {"x": torch.tensor([3.0])}, None, JudgeCost(1, 4, 1))
    c = concat_outputs([a, b])
    assert torch.equal(c.scores, torch.tensor([0.1, 0.2, 0.3]))
    assert set(c.components) == {"x"}  # y is missing from b
    assert torch.equal(c.components["x"], torch.tensor([1.0, 2.0, 3.0]))
    assert c.texts is None
    assert c.cost == JudgeCost(3, 4, 3)
    t = a.take([1])
    assert torch.equal(t.scores, torch.tensor([0.2])) and t.texts == ["b"]
    with pytest.raises(ValueError, match="at least one"):
        concat_outputs([])


def test_validation_errors_name_the_problem():
    validate_judge_inputs(["a"], [_rgb()])
    with pytest.raises(ValueError, match="prompts is empty"):
        validate_judge_inputs([], [])
    with pytest.raises(ValueError, match=r"len\(prompts\)=2 != len\(images\)=1"):
        validate_judge_inputs(["a", "b"], [_rgb()])
    with pytest.raises(ValueError, match=r"images\[1\] has mode 'L'"):
        validate_judge_inputs(["a", "b"], [_rgb(), Image.new("L", (8, 8))])
    with pytest.raises(ValueError, match=r"images\[0\] has mode 'RGBA'"):
        validate_images([Image.new("RGBA", (8, 8))])
    with pytest.raises(TypeError, match=r"images\[0\] must be a PIL"):
        validate_judge_inputs(["a"], [torch.zeros(3, 8, 8)])
    with pytest.raises(ValueError, match=r"size \(8, 8\), expected \(16, 16\)"):
        validate_judge_inputs(["a"], [_rgb()], expected_size=(16, 16))
    with pytest.raises(TypeError, match="single str"):
        validate_judge_inputs("a", [_rgb()])
    with pytest.raises(TypeError, match=r"prompts\[0\] must be a str"):
        validate_judge_inputs([3], [_rgb()])
    with pytest.raises(ValueError, match=r"step_images\[7\]"):
        validate_images([Image.new("L", (8, 8))], name="step_images", indices=[7])


def test_validate_step():
    validate_step(0, 18)
    validate_step(17, 18)
    for step, num_steps in [(18, 18), (-1, 18), (0, 0)]:
        with pytest.raises(ValueError):
            validate_step(step, num_steps)


def test_protocols_are_structural():
    class Outcome:
        def score(self, prompts, images):
            return JudgeOutput(scores=torch.zeros(len(prompts)))

    class Process:
        def score_steps(self, prompts, step_images, step, num_steps):
            return JudgeOutput(scores=torch.zeros(len(prompts)))

    assert isinstance(Outcome(), OutcomeJudge) and not isinstance(Outcome(), ProcessJudge)
    assert isinstance(Process(), ProcessJudge) and not isinstance(Process(), OutcomeJudge)
    assert isinstance(ScriptedYesNoJudge(lambda c, i: (0.5, 0.5, "yes")), YesNoJudge)


def test_scripted_judge_reports_decisions_and_costs():
    answers = {"q1": (0.7, 0.2, "yes"), "q2": (0.1, 0.8, "No"), "q3": (0.3, 0.3, "maybe")}
    judge = ScriptedYesNoJudge(lambda conv, img: answers[conv[-1]["content"]])
    out = judge.ask([[{"role": "user", "content": q}] for q in answers], [_rgb()] * 3)
    assert out.components["answer_yes"].tolist() == [1.0, 0.0, 0.0]
    assert out.components["answer_no"].tolist() == [0.0, 1.0, 0.0]
    assert out.scores.tolist() == pytest.approx([0.7, 0.1, 0.3])
    assert out.cost == JudgeCost(3, 0, 3)
    text = judge.generate_text([[{"role": "user", "content": "q1"}]], [_rgb()])
    assert isinstance(text, TextOutput) and text.cost.generated_tokens == len(text.texts[0].split())
