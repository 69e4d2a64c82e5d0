"""PRM (reward_models/prm.py): reference question on intermediate images, step checks, YAML configs."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from reward_models.base import ProcessJudge
from reward_models.prm import PRM
from reward_models.tiny import ScriptedYesNoJudge
from tests.helpers import reward_on_tiny_judge

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "reward"
# Typed from reference imagegen_cot.md §5.
PRM_TEXT = (
    "<image> This is an intermediate image in the generation process by a prompt: {}. Does this intermediate "
    "image accurately represent the prompt? Please answer yes or no without explanation."
)


def _image(value):
    return Image.new("RGB", (32, 32), (value, value, value))


def test_prm_scores_each_step_with_the_reference_question():
    judge = ScriptedYesNoJudge(lambda conv, img: (img.getpixel((0, 0))[0] / 255, 0.1, "yes"))
    prm = PRM(judge)
    assert isinstance(prm, ProcessJudge)
    out = prm.score_steps(["a cat", "a dog"], [_image(51), _image(204)], step=3, num_steps=18)
    assert out.scores.tolist() == pytest.approx([0.2, 0.8])
    assert out.components["step"].tolist() == [3.0, 3.0]
    assert [c[0]["content"] for c, _ in judge.calls] == [PRM_TEXT.format("a cat"), PRM_TEXT.format("a dog")]


def test_prm_checks_step_and_inputs():
    prm = PRM(ScriptedYesNoJudge(lambda conv, img: (0.5, 0.5, "yes")))
    with pytest.raises(ValueError, match=r"step must be in \[0, 18\), got 18"):
        prm.score_steps(["a cat"], [_image(0)], step=18, num_steps=18)
    with pytest.raises(ValueError, match=r"len\(prompts\)=2 != len\(step_images\)=1"):
        prm.score_steps(["a", "b"], [_image(0)], step=0, num_steps=18)
    with pytest.raises(ValueError, match=r"step_images\[0\] has mode 'RGBA'"):
        prm.score_steps(["a"], [Image.new("RGBA", (8, 8))], step=0, num_steps=18)


@pytest.mark.parametrize("name", ["prm_zeroshot", "prm_finetuned"])
def test_yaml_instantiates_with_the_tiny_judge(name, tmp_path):
    prm = reward_on_tiny_judge(name, tmp_path / "tiny")
    assert isinstance(prm, PRM)
    out = prm.score_steps(["a red car"], [_image(120)], step=0, num_steps=18)
    assert out.scores.shape == (1,) and 0 <= float(out.scores[0]) <= 1
    assert torch.equal(out.components["answer_yes"] + out.components["answer_no"], torch.ones(1))
