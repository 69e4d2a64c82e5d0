"""scripts/build_prm_data.py end to end in rehearsal mode (docs/rehearsal.md): the official-format stand-ins of Show-o,
MAGVIT-v2, the phi tokenizer, GenEval's Mask2Former and CLIP (the rehearsal's own builders), 2 training prompts x 2
paths, roll-outs at one step with 2 completions, 4 steps. Checks the paper's labelling rule (§5: a step is "yes" iff
any roll-out from it is accepted) against the stored verdicts, the files' format, the held-out GenEval prompts, and
that a bad input is refused before anything is written."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from common.validate import ConfigError
from reward_models.data import read_examples
from tests.helpers import compose_entry, load_recipe

STEPS, ROLLOUT_STEP, ROLLOUTS, PATHS = 4, 1, 2, 2
# Training metadata whose verdicts on the stand-ins are mixed: the random stand-in detector finds a "fork" in nearly
# every stand-in Show-o image and a "giraffe" in some (found by running them), so both labels, and roll-outs that
# disagree, occur; the rehearsal's colour prompts are all rejected by it.
TRAINING = ({"tag": "single_object", "include": [{"class": "giraffe", "count": 1}], "prompt": "a photo of a giraffe"},
            {"tag": "single_object", "include": [{"class": "fork", "count": 1}], "prompt": "a photo of a fork"})


@pytest.fixture(scope="module")
def standins(tmp_path_factory):
    """The rehearsal's stand-ins this recipe reads (no judges): ``(env, training metadata)``; 2 training prompts."""
    from eval.geneval.standin import build_standin_clip, build_standin_mask2former
    from showo.standin import build_phi_tokenizer, build_standin_magvit, build_standin_showo

    rehearsal = load_recipe("make_rehearsal_checkpoints")
    out = tmp_path_factory.mktemp("rehearsal")
    geneval, _ = rehearsal.write_prompts(out)  # the 2 GenEval (held-out) prompts + training prompts
    prompts = [line["prompt"] for line in TRAINING]
    train = out / "prompts" / "prm_metadata.jsonl"
    train.write_text("".join(json.dumps(line) + "\n" for line in TRAINING))
    build_phi_tokenizer(out / "phi-1_5", prompts * 3)
    build_standin_magvit(out / "magvitv2")
    build_standin_showo(out / "show-o", out / "phi-1_5")
    ckpts = out / "ckpts"
    build_standin_mask2former(ckpts / rehearsal.DETECTOR, ckpts / "mask2former_config.json")
    build_standin_clip(ckpts / rehearsal.CLIP, ckpts / "imagecot-rehearsal-clip.json")
    env = {"SHOWO_CKPT": str(out / "show-o"), "MAGVIT_CKPT": str(out / "magvitv2"), "PHI_TOKENIZER": str(out / "phi-1_5"),
           "IMAGECOT_CKPTS": str(ckpts), "GENEVAL_DETECTOR_CONFIG": str(ckpts / "mask2former_config.json"),
           "GENEVAL_CLIP_MODEL": str(ckpts / "imagecot-rehearsal-clip.json"), "GENEVAL_METADATA": str(geneval),
           "IMAGECOT_DEVICE": "cpu", "IMAGECOT_THREADS": "1"}
    return env, train


def _cfg(monkeypatch, env, overrides):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return compose_entry("build_prm_data", overrides)


@pytest.fixture(scope="module")
def data(standins, tmp_path_factory):
    env, train = standins
    run_dir = tmp_path_factory.mktemp("prm") / "run"
    with pytest.MonkeyPatch.context() as mp:
        cfg = _cfg(mp, env, [f"prompts={train}", f"run_dir={run_dir}", f"paths_per_prompt={PATHS}",
                             f"rollout_steps=[{ROLLOUT_STEP}]", f"rollouts={ROLLOUTS}", "batch_size=2",
                             f"model.sampling.num_inference_steps={STEPS}"])
        assert cfg.model.sampling.guidance_scale == 1.75  # Show-o's official guidance, from the sampler config
        out = load_recipe("build_prm_data").run(cfg)
    return env, train, out


def test_every_step_is_labelled_any_rollout_accepted(data):
    _, _, out = data
    records = [json.loads(line) for line in (out / "rollouts.jsonl").read_text().splitlines()]
    examples = {ex.id: ex for ex in read_examples(out / "prm.jsonl")}  # every image exists
    assert set(examples) == {r["id"] for r in records}
    # 2 prompts x 2 paths x (the roll-out step + the final step)
    assert sorted((r["line"], r["path"], r["step"]) for r in records) == \
        [(i, k, s) for i in range(2) for k in range(PATHS) for s in (ROLLOUT_STEP, STEPS - 1)]
    for r in records:
        assert len(r["verdicts"]) == (ROLLOUTS if r["step"] == ROLLOUT_STEP else 1)
        expected = "yes" if any(v["correct"] for v in r["verdicts"]) else "no"
        assert examples[r["id"]].task == "prm" and examples[r["id"]].conversation[1]["content"] == expected, r
        assert r["label"] == (expected == "yes")
    assert {r["label"] for r in records} == {True, False}  # both answers occur: the rule is tested, not a constant
    # roll-outs that disagree ("any", not "all" or "the first"), and a step whose label is not its path's outcome
    assert any(len({v["correct"] for v in r["verdicts"]}) == 2 for r in records)
    final = {(r["line"], r["path"]): r["label"] for r in records if r["step"] == STEPS - 1}
    assert any(r["label"] != final[r["line"], r["path"]] for r in records if r["step"] == ROLLOUT_STEP)
    rejected = [v for r in records for v in r["verdicts"] if not v["correct"]]
    assert all(v["reason"] for v in rejected)  # GenEval's judge explains every rejection ("expected ..., found ...")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["examples"] == len(records) and summary["config"]["rollout_steps"] == [ROLLOUT_STEP]
    assert summary["config"]["guidance_scale"] == 1.75 and summary["config"]["num_inference_steps"] == STEPS


def test_prompts_are_the_training_metadata_and_no_eval_prompt(data):
    env, train, out = data
    held_out = [json.loads(line)["prompt"] for line in Path(env["GENEVAL_METADATA"]).read_text().splitlines()]
    prompts = [json.loads(line)["prompt"] for line in train.read_text().splitlines()]
    texts = [ex.conversation[0]["content"] for ex in read_examples(out / "prm.jsonl")]
    for ex_text in texts:
        assert any(f"prompt: {p}." in ex_text for p in prompts), ex_text
        assert not any(f"prompt: {p}." in ex_text for p in held_out), ex_text


def test_a_rerun_resumes_every_done_prompt(data, monkeypatch):
    """Lines done are never sampled again (the real-scale job is resumable per prompt)."""
    env, train, out = data
    before = (out / "prm.jsonl").read_text()
    import reward_models.prm_data as prm_data

    monkeypatch.setattr(prm_data, "sample_paths", lambda *a, **k: pytest.fail("a done prompt was sampled again"))
    cfg = _cfg(monkeypatch, env, [f"prompts={train}", f"run_dir={out}", f"paths_per_prompt={PATHS}",
                                  f"rollout_steps=[{ROLLOUT_STEP}]", f"rollouts={ROLLOUTS}", "batch_size=3",
                                  f"model.sampling.num_inference_steps={STEPS}"])
    assert load_recipe("build_prm_data").run(cfg) == out
    assert (out / "prm.jsonl").read_text() == before


@pytest.mark.parametrize("case", ["missing_prompts", "eval_prompts", "bad_step"])
def test_bad_input_is_named_before_anything_is_written(standins, tmp_path, monkeypatch, case):
    env, train = standins
    run_dir = tmp_path / "run"
    prompts = {"missing_prompts": tmp_path / "nope.jsonl", "eval_prompts": env["GENEVAL_METADATA"]}.get(case, train)
    overrides = [f"prompts={prompts}", f"run_dir={run_dir}", f"model.sampling.num_inference_steps={STEPS}",
                 f"rollout_steps=[{STEPS - 1 if case == 'bad_step' else 0}]"]
    cfg = _cfg(monkeypatch, env, overrides)
    with pytest.raises(ConfigError) as err:
        load_recipe("build_prm_data").run(cfg)
    expected = {"missing_prompts": ("prompts", "nope.jsonl"), "eval_prompts": ("held_out", "a photo of a bench"),
                "bad_step": ("rollout_steps", str(STEPS - 1))}[case]
    assert all(word in str(err.value) for word in expected), str(err.value)
    assert os.listdir(tmp_path) == []  # no run directory, nothing else


def test_the_rehearsals_training_prompts_are_not_its_geneval_prompts():
    """The rehearsal's training prompts once held its GenEval prompt 'a photo of a blue dog' (DPO, PARM++ and PRM data
    trained on the benchmark); build_prm_data's held-out check found it."""
    rehearsal = load_recipe("make_rehearsal_checkpoints")
    geneval = {line["prompt"] for line in rehearsal.GENEVAL_LINES}
    assert not geneval & set(rehearsal.training_prompts())
    metadata = rehearsal.training_metadata(rehearsal.training_prompts()[:4])  # PRM_PROMPTS of rehearsal.env
    assert [spec.prompt for spec in parse_all(metadata)] == rehearsal.training_prompts()[:4]


def parse_all(lines):
    from eval.geneval.prompts import COCO_CLASSES, parse_metadata

    return [parse_metadata(line, COCO_CLASSES, i) for i, line in enumerate(lines)]
