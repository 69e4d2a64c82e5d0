"""PARM's potential data the paper's way (reward_models/judge_steps.py, imagegen_cot.md §6.4): clear step images of
the generator's own paths, labelled with their path's final verdict, line-balanced; on a tiny random Show-o with a
tiny MAGVIT-v2 and a scripted labeller."""
from __future__ import annotations

from collections import Counter

import pytest
from PIL import Image

from common.seeding import generators, image_seed
from reward_models.data import read_examples
from reward_models.judge_data import JudgeDataConfig
from reward_models.judge_steps import POTENTIAL_STEPS, build_judge_steps, clear_steps
from showo.factory import build_tiny_showo
from tests.helpers import parity_labeller
from tests.search.search_doubles import TINY_VQ, WORDS

STEPS = 6  # clarity rule scaled to 6 steps: yes_after = 4 -> clear steps 4 (0-based), the last step excluded



LINES = [{"prompt": "a photo of a red circle", "tag": "colors"}, {"prompt": "a blue square", "tag": "colors"},
         {"prompt": "a red square", "tag": "two_object"}]


@pytest.fixture(scope="module")
def pipe():
    return build_tiny_showo(WORDS, vq=TINY_VQ, seed=0).pipeline()


def _build(pipe, out, batch_size, per_line=5):
    return build_judge_steps(pipe, LINES, parity_labeller, out, per_line=per_line, steps_per_path=1, seed=3,
                             guidance_scale=1.5, num_steps=STEPS, batch_size=batch_size)


def test_clear_steps_follow_the_static_rule_and_skip_the_final_step():
    assert clear_steps(12) == [7, 8, 9, 10]  # 1-based 8..11: the rule's clear steps (8..12) but the final image
    assert clear_steps(18) == [11, 12, 13, 14, 15, 16]
    assert clear_steps(STEPS) == [4]


def test_examples_carry_their_paths_final_verdict_balanced_per_line(pipe, tmp_path):
    counts = _build(pipe, tmp_path, batch_size=4)
    examples = read_examples(tmp_path / POTENTIAL_STEPS)
    assert examples and counts["examples"] == len(examples) and counts["paths"] == 5 * len(LINES)
    per_line: Counter = Counter()
    for ex in examples:
        i, k, step = int(ex.id[:5]), int(ex.id[7:10]), int(ex.id[-2:])
        assert ex.id == f"{i:05d}_t{k:03d}_s{step:02d}" and step in clear_steps(STEPS)
        # the path itself, drawn alone with its own seed: its final image's verdict is the example's answer
        final = pipe([LINES[i]["prompt"]], generator=generators([image_seed(3, i, k)]), guidance_scale=1.5,
                     num_inference_steps=STEPS).images[0]
        answer = ex.conversation[-1]["content"]
        assert answer == ("yes" if parity_labeller(LINES[i], final).correct else "no"), ex.id
        assert ex.conversation[1] == {"role": "assistant", "content": "yes"}  # follow-up after a clarity "yes"
        assert f"'{LINES[i]['prompt']}.'" in ex.conversation[0]["content"]
        with Image.open(tmp_path / ex.image) as im:
            assert im.size == final.size
        per_line[i, answer] += 1
    for i in range(len(LINES)):
        assert per_line[i, "yes"] == per_line[i, "no"]
    assert counts["yes"] == sum(n for (_, a), n in per_line.items() if a == "yes")


def test_the_file_does_not_depend_on_the_batch_size(pipe, tmp_path):
    _build(pipe, tmp_path / "a", batch_size=2)
    _build(pipe, tmp_path / "b", batch_size=15)
    assert (tmp_path / "a" / POTENTIAL_STEPS).read_text() == (tmp_path / "b" / POTENTIAL_STEPS).read_text()
    for ex in read_examples(tmp_path / "a" / POTENTIAL_STEPS):
        assert (tmp_path / "a" / ex.image).read_bytes() == (tmp_path / "b" / ex.image).read_bytes()


def test_bad_settings_are_refused(pipe, tmp_path):
    with pytest.raises(ValueError, match="steps_per_path in \\[1, 1\\]"):
        build_judge_steps(pipe, LINES, parity_labeller, tmp_path, per_line=2, steps_per_path=2, seed=3,
                          guidance_scale=1.5, num_steps=STEPS)
    with pytest.raises(ValueError, match="steps_seed = 7 is also seed or finals_seed"):
        JudgeDataConfig(finals_per_line=1, steps_per_line=1, steps_seed=7)
    with pytest.raises(ValueError, match="steps_per_line >= 0"):
        JudgeDataConfig(steps_per_line=-1)
