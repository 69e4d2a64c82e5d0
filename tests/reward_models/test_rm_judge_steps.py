"""PARM's potential data the paper's way (reward_models/judge_steps.py, imagegen_cot.md §6.4): clear step images of
the generator's own paths, labelled with their path's final verdict, line-balanced; on a tiny random Show-o with a
tiny MAGVIT-v2 and a scripted labeller."""
from __future__ import annotations

from collections import Counter

import pytest
import torch
from PIL import Image

from common.seeding import generators, image_seed
from reward_models.data import explanation, read_examples
from reward_models.judge_data import JudgeDataConfig
from reward_models.rollouts import sample_paths
from reward_models.judge_steps import (POTENTIAL_STEPS, STEPS_CLARITY, STEPS_FINALS, STEPS_REFLECTION,
                                       STEPS_SELF_CORRECTION, build_judge_steps, clarity_rule, clear_steps)
from showo.factory import build_tiny_showo
from showo.self_correction import SelfCorrectionDataset
from tests.helpers import ScriptedVerdict, parity_labeller
from tests.search.search_doubles import TINY_VQ, WORDS

STEPS = 6  # clarity rule scaled to 6 steps: yes_after = 4 -> clear steps 4 (0-based), the last step excluded



LINES = [{"prompt": "a photo of a red circle", "tag": "colors"}, {"prompt": "a blue square", "tag": "colors"},
         {"prompt": "a red square", "tag": "two_object"}]


@pytest.fixture(scope="module")
def pipe():
    return build_tiny_showo(WORDS, vq=TINY_VQ, seed=0).pipeline()


def _build(pipe, out, batch_size, per_line=5, **kwargs):
    return build_judge_steps(pipe, LINES, parity_labeller, out, per_line=per_line, steps_per_path=1, seed=3,
                             guidance_scale=1.5, num_steps=STEPS, batch_size=batch_size, **kwargs)


def test_clear_steps_follow_the_static_rule_and_skip_the_final_step():
    assert clear_steps(12) == [7, 8, 9, 10]  # 1-based 8..11: the rule's clear steps (8..12) but the final image
    assert clear_steps(18) == [11, 12, 13, 14, 15, 16]
    assert clear_steps(STEPS) == [4]


def test_a_world_may_call_its_step_images_clear_later():
    """``clear_from`` (1-based) moves the first clear step; the steps the static rule calls unclear stay unclear."""
    assert clarity_rule(12) == (7, 7) and clarity_rule(12, 11) == (10, 7)
    assert clear_steps(12, 11) == [10] and clear_steps(12, 8) == clear_steps(12)
    for bad in (6, 13):
        with pytest.raises(ValueError, match="clear_from"):
            clarity_rule(12, bad)


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


def test_extras_give_every_parm_question_from_the_same_paths(pipe, tmp_path):
    """With ``extras``: every path's final image with the ORM question and its verdict; per kept (line-balanced) path
    its clear step "yes" and one unclear step "no" to the clarity question, and its final image as a reflection
    example ("no" + the exact judge's reasons); the potential file is the one built without extras."""
    _build(pipe, tmp_path / "plain", batch_size=4)
    counts = _build(pipe, tmp_path / "extras", batch_size=4, extras=True)
    root = tmp_path / "extras"
    assert (root / POTENTIAL_STEPS).read_text() == (tmp_path / "plain" / POTENTIAL_STEPS).read_text()
    finals = read_examples(root / STEPS_FINALS)
    assert len(finals) == counts["paths"] == 5 * len(LINES)
    verdict = {}
    for ex in finals:
        i, k = int(ex.id[:5]), int(ex.id[7:10])
        final = pipe([LINES[i]["prompt"]], generator=generators([image_seed(3, i, k)]), guidance_scale=1.5,
                     num_inference_steps=STEPS).images[0]
        verdict[i, k] = parity_labeller(LINES[i], final)
        assert ex.conversation[-1]["content"] == ("yes" if verdict[i, k].correct else "no"), ex.id
    assert counts[STEPS_FINALS]["yes"] == sum(v.correct for v in verdict.values()) == counts["accepted"]
    kept = {(int(ex.id[:5]), int(ex.id[7:10])) for ex in read_examples(root / POTENTIAL_STEPS)}
    assert kept  # the scripted labeller accepts some paths and rejects others
    yes_after, no_before = clarity_rule(STEPS)
    clarity: Counter = Counter()
    for ex in read_examples(root / STEPS_CLARITY):
        i, k, step = int(ex.id[:5]), int(ex.id[7:10]), int(ex.id[-2:])
        answer = ex.conversation[-1]["content"]
        assert (i, k) in kept and answer == ("yes" if step + 1 > yes_after else "no")
        assert step + 1 > yes_after or step + 1 < no_before, ex.id
        clarity[i, k, answer] += 1
    assert all(clarity[i, k, "yes"] == clarity[i, k, "no"] == 1 for i, k in kept)
    reflections = read_examples(root / STEPS_REFLECTION)
    assert {(int(ex.id[:5]), int(ex.id[7:10])) for ex in reflections} == kept
    for ex in reflections:
        v = verdict[int(ex.id[:5]), int(ex.id[7:10])]
        assert ex.conversation[1]["content"] == ("yes" if v.correct else "no")
        assert len(ex.conversation) == (2 if v.correct else 4)
    assert counts[STEPS_REFLECTION] == {"examples": len(kept), "yes": len(kept) // 2}


def test_unbalanced_data_keeps_every_path(pipe, tmp_path):
    """``balance=False``: every path gives its potential (and clarity, reflection) examples, so the potential file
    has one example per path and clear step kept, "yes" exactly for the accepted paths; the balanced file is a
    subset of it."""
    balanced = _build(pipe, tmp_path / "balanced", batch_size=4, extras=True)
    counts = _build(pipe, tmp_path / "all", batch_size=4, extras=True, balance=False)
    examples = read_examples(tmp_path / "all" / POTENTIAL_STEPS)
    assert len(examples) == counts["examples"] == counts["paths"] == 5 * len(LINES)
    assert counts["yes"] == counts["accepted"] == balanced["accepted"] > balanced["yes"]
    assert {ex.id for ex in read_examples(tmp_path / "balanced" / POTENTIAL_STEPS)} < {ex.id for ex in examples}
    assert counts[STEPS_REFLECTION]["examples"] == counts["paths"]
    assert counts[STEPS_CLARITY] == {"examples": 2 * counts["paths"], "yes": counts["paths"]}


def test_extras_give_self_correction_groups_of_own_paths(pipe, tmp_path):
    """One group per rejected path of a line with an accepted path: the prompt, the exact judge's reasons, the
    rejected path's final codes and an accepted path's of the same line (the line's accepted paths in turn); a line
    with no accepted path gives none (its target would not be the generator's own success)."""
    def labeller(line, image):  # the third line never succeeds
        return ScriptedVerdict(False, "never") if line is LINES[2] else parity_labeller(line, image)

    counts = build_judge_steps(pipe, LINES, labeller, tmp_path, per_line=5, steps_per_path=1, seed=3,
                               guidance_scale=1.5, num_steps=STEPS, batch_size=4, extras=True)
    finals = {}
    for i, line in enumerate(LINES):
        for k in range(5):
            out = pipe([line["prompt"]], generator=generators([image_seed(3, i, k)]), guidance_scale=1.5,
                       num_inference_steps=STEPS, output_type="tokens")
            tokens = out.tokens[0]
            finals[i, k] = (tokens, labeller(line, pipe.decode(tokens[None], "pil")[0]))
    data = SelfCorrectionDataset(tmp_path / STEPS_SELF_CORRECTION)
    expected = []
    for i, line in enumerate(LINES):
        good = [finals[i, k][0] for k in range(5) if finals[i, k][1].correct]
        bad = [finals[i, k] for k in range(5) if not finals[i, k][1].correct]
        if good:
            expected += [(line["prompt"], t, v, good[n % len(good)]) for n, (t, v) in enumerate(bad)]
    assert expected and len(data) == len(expected) == counts[STEPS_SELF_CORRECTION]["examples"]
    assert len(expected) < sum(not v.correct for _, v in finals.values())  # a line without an accepted path
    for n, (prompt, bad, verdict, good) in enumerate(expected):
        assert data.groups[n]["prompt"] == prompt and data.groups[n]["feedback"] == explanation(verdict)
        assert torch.equal(data.bad[n], bad) and torch.equal(data.good[n], good)


def test_rollout_labels_are_any_completion_accepted_balanced_per_line(pipe, tmp_path):
    """``potential_label="rollouts"``: a potential example is "yes" iff any of ``rollouts`` completions of its step
    (fresh seeds, ``reward_models.rollouts``) ends accepted, not its path's final verdict; per line as many "yes" as
    "no" examples by that label, drawn from every path; the other files are the ones built with final labels."""
    _build(pipe, tmp_path / "final", batch_size=4, extras=True)
    counts = _build(pipe, tmp_path / "roll", batch_size=3, extras=True, potential_label="rollouts", rollouts=3)
    for name in (STEPS_FINALS, STEPS_CLARITY, STEPS_REFLECTION):
        assert (tmp_path / "roll" / name).read_text() == (tmp_path / "final" / name).read_text(), name
    step = clear_steps(STEPS)[0]
    jobs = [(i, k) for i in range(len(LINES)) for k in range(5)]
    paths = {(p.line, p.index): p for p in sample_paths(
        pipe, LINES, jobs, lambda i, k: image_seed(3, i, k), labeller=parity_labeller, guidance_scale=1.5,
        num_steps=STEPS, rollout_steps=lambda i, k: {step}, rollouts=3, seed=3, batch_size=7)}
    examples = read_examples(tmp_path / "roll" / POTENTIAL_STEPS)
    assert examples and counts["examples"] == len(examples) and counts["potential_label"] == "rollouts"
    every = _build(pipe, tmp_path / "all", batch_size=4, potential_label="rollouts", rollouts=3, balance=False)
    unbalanced = read_examples(tmp_path / "all" / POTENTIAL_STEPS)
    assert len(unbalanced) == every["examples"] == len(jobs)
    assert {ex.id for ex in examples} < {ex.id for ex in unbalanced}
    per_line: Counter = Counter()
    differs = 0
    for root, ex in [("roll", ex) for ex in examples] + [("all", ex) for ex in unbalanced]:
        i, k = int(ex.id[:5]), int(ex.id[7:10])
        label = paths[i, k].rollout_label(step)
        assert ex.conversation[-1]["content"] == ("yes" if label else "no"), ex.id
        assert (tmp_path / root / ex.image).is_file(), ex.id
        differs += label != paths[i, k].final.verdict.correct
    for ex in examples:
        per_line[int(ex.id[:5]), ex.conversation[-1]["content"]] += 1
    assert differs  # the roll-outs, not the path's own end, decide
    for i in range(len(LINES)):
        assert per_line[i, "yes"] == per_line[i, "no"]
    with pytest.raises(ValueError, match="potential_label"):
        _build(pipe, tmp_path / "bad", batch_size=3, potential_label="roll")
