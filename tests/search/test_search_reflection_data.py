"""PARM++ self-correction data from the judge's own answers (search/reflection_data.py) and the judge labeller
(reward_models/labellers.py), with a scripted PARM++ judge on the tiny Show-o."""
from __future__ import annotations

import json

import pytest
import torch

from dpo.iterative import generate_pools
from reward_models.labellers import JudgeVerdict, ReflectionLabeller
from reward_models.parm import Parm
from reward_models.parmpp import ParmPlusPlus
from reward_models.tiny import ScriptedYesNoJudge
from search.pool import entry_path, load_entry
from search.reflection_data import FALLBACK_FEEDBACK, reflect_pools, self_correction_groups
from showo.self_correction import SelfCorrectionDataset
from tests.search.search_doubles import tiny_bundle

PROMPTS = ["a red circle", "a blue square", "a green triangle"]
SAMPLING = {"guidance_scale": 1.75, "num_inference_steps": 4}


def _judge(accept):
    """PARM++ whose reflection accepts an image iff ``accept(prompt, mean red)``; explanations name the image."""
    def answer(conversation, image):
        prompt = conversation[0]["content"].split("prompt: ")[1].split(".")[0]
        ok = accept(prompt, image.getpixel((0, 0))[0])
        return (0.9, 0.1, "yes") if ok else (0.1, 0.9, "no")

    explain = lambda conversation, image: f"wrong colour (red {image.getpixel((0, 0))[0]})"  # noqa: E731
    return ParmPlusPlus(Parm(ScriptedYesNoJudge(answer, explain)))


@pytest.fixture(scope="module")
def pools(tmp_path_factory):
    pipe = tiny_bundle().pipeline()
    pool = tmp_path_factory.mktemp("pool")
    with torch.no_grad():
        generate_pools(pipe, PROMPTS, pool, SAMPLING, num_candidates=6, batch_size=4, seed=0, round_index=0)
    return pipe, pool


def test_groups_pair_a_rejected_image_and_its_explanation_with_an_accepted_one(pools, tmp_path):
    pipe, pool = pools
    first_red = {p: pipe.decode(load_entry(entry_path(pool, i, 0)).tokens[:1], "pil")[0].getpixel((0, 0))[0]
                 for i, p in enumerate(PROMPTS)}
    # prompt 0: only its first candidate's colour is accepted; prompt 1: everything; prompt 2: nothing
    parmpp = _judge(lambda prompt, red: prompt == PROMPTS[1] or (prompt == PROMPTS[0] and red == first_red[prompt]))
    reflect_pools(parmpp, pipe, PROMPTS, pool, batch_size=4)
    entry = load_entry(entry_path(pool, 0, 0))
    reflection = entry.extras["reflection"]
    assert len(reflection["accept"]) == 6 and reflection["accept"][0]
    assert all((e is None) == a for a, e in zip(reflection["accept"], reflection["explanations"]))
    counts = self_correction_groups(PROMPTS, pool, tmp_path / "sc", groups_per_prompt=2, seed=0)
    rejected = [k for k, a in enumerate(reflection["accept"]) if not a]
    expected = min(2, len(rejected))
    assert counts == {"groups": expected, "prompts_used": 1, "prompts": 3, "fallback_feedback": 0}
    data = SelfCorrectionDataset(tmp_path / "sc")
    assert len(data) == expected and {g["prompt"] for g in data.groups} == {PROMPTS[0]}
    accepted = {tuple(entry.tokens[k].tolist()) for k, a in enumerate(reflection["accept"]) if a}
    for group, bad, good in zip(data.groups, data.bad, data.good):
        k = next(k for k in rejected if torch.equal(entry.tokens[k], bad))
        assert group["feedback"] == reflection["explanations"][k]
        assert tuple(good.tolist()) in accepted
    # the same seed draws the same groups; resuming the reflection does not ask the judge again
    self_correction_groups(PROMPTS, pool, tmp_path / "sc2", groups_per_prompt=2, seed=0)
    assert (tmp_path / "sc2" / "groups.jsonl").read_bytes() == (tmp_path / "sc" / "groups.jsonl").read_bytes()
    calls = len(parmpp.parm.judge.calls)
    reflect_pools(parmpp, pipe, PROMPTS, pool, batch_size=4)
    assert len(parmpp.parm.judge.calls) == calls


def test_no_group_without_both_answers_and_empty_explanations_get_feedback(tmp_path):
    pipe = tiny_bundle().pipeline()
    pool = tmp_path / "pool"
    with torch.no_grad():
        generate_pools(pipe, PROMPTS[:1], pool, SAMPLING, num_candidates=4, batch_size=4, seed=1, round_index=0)
    reflect_pools(_judge(lambda p, r: True), pipe, PROMPTS[:1], pool, batch_size=4)
    with pytest.raises(ValueError, match="no self-correction group"):
        self_correction_groups(PROMPTS[:1], pool, tmp_path / "sc", groups_per_prompt=1, seed=0)
    entry = load_entry(entry_path(pool, 0, 0))
    entry.extras["reflection"] = {"accept": [True, False, False, False], "explanations": [None, "", "  ", None]}
    from search.pool import save_entry

    save_entry(pool, entry)
    counts = self_correction_groups(PROMPTS[:1], pool, tmp_path / "sc", groups_per_prompt=3, seed=0)
    assert counts["groups"] == 3 and counts["fallback_feedback"] == 3
    lines = [json.loads(x) for x in (tmp_path / "sc" / "groups.jsonl").read_text().splitlines()]
    assert {x["feedback"] for x in lines} == {FALLBACK_FEEDBACK}
    with pytest.raises(ValueError, match="groups_per_prompt"):
        self_correction_groups(PROMPTS[:1], pool, tmp_path / "sc3", groups_per_prompt=0, seed=0)


def test_reflection_labeller_gives_the_judges_answer_and_reason():
    from PIL import Image

    labeller = ReflectionLabeller(_judge(lambda prompt, red: red > 100))
    line = {"prompt": "a red circle", "tag": "colors"}
    assert labeller(line, Image.new("RGB", (8, 8), (200, 0, 0))) == JudgeVerdict(True, "")
    assert labeller(line, Image.new("RGB", (8, 8), (20, 0, 0))) == JudgeVerdict(False, "wrong colour (red 20)")
    silent = ReflectionLabeller(ParmPlusPlus(Parm(ScriptedYesNoJudge(lambda c, i: (0.1, 0.9, "no"), lambda c, i: " "))))
    assert silent(line, Image.new("RGB", (8, 8))).reason == silent.fallback_reason and silent.fallbacks == 1
    with pytest.raises(ValueError, match="fallback_reason"):
        ReflectionLabeller(silent.parmpp, fallback_reason=" ")
