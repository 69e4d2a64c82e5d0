"""common.rundir: a run resumes only into a directory whose fingerprint matches; otherwise the keys are named."""
from __future__ import annotations

import json

import pytest
from omegaconf import OmegaConf

from common.rundir import RunDir, RunMismatch, fingerprint, flatten


def _cfg(**over):
    base = {"seed": 0, "batch_size": 4, "model": {"steps": 12, "guidance": 3.0}, "prompts": "p.txt"}
    base.update(over)
    return OmegaConf.create(base)


def test_flatten_names_nested_keys():
    assert flatten({"a": {"b": 1, "c": [1, 2]}, "d": {}}) == {"a.b": 1, "a.c": [1, 2], "d": {}}


def test_fresh_directory_records_config_fingerprint_and_environment(tmp_path):
    run = RunDir.open(tmp_path / "run", _cfg(), ignore=["batch_size"])
    assert (run.path / "config.yaml").is_file()
    info = json.loads((run.path / "run.json").read_text())
    assert info["fingerprint"]["config"]["model.steps"] == 12
    assert "batch_size" not in info["fingerprint"]["config"]
    env = info["sessions"][0]["environment"]
    assert env["torch_threads"] >= 1 and env["cpu"] and "torch" in env["packages"]


def test_resume_with_the_same_settings_and_an_ignored_key_changed(tmp_path):
    RunDir.open(tmp_path / "run", _cfg(), ignore=["batch_size"])
    run = RunDir.open(tmp_path / "run", _cfg(batch_size=1), ignore=["batch_size"])
    assert len(run.info["sessions"]) == 2


def test_other_config_is_refused_with_every_differing_key(tmp_path):
    RunDir.open(tmp_path / "run", _cfg())
    (tmp_path / "run" / "out.png").write_bytes(b"old output")
    with pytest.raises(RunMismatch) as err:
        RunDir.open(tmp_path / "run", _cfg(seed=1, model={"steps": 18, "guidance": 3.0}))
    message = str(err.value)
    assert "config 'seed': on disk 0, now 1" in message and "config 'model.steps': on disk 12, now 18" in message
    assert "guidance" not in message
    assert (tmp_path / "run" / "out.png").read_bytes() == b"old output"  # nothing touched


def test_key_order_is_part_of_the_fingerprint_but_not_of_old_run_directories(tmp_path):
    """A mapping's order can decide outputs (the shapes palette's order decides every drawn prompt): the same keys and
    values in another order are refused, naming the mapping; ignored keys are left out of the order."""
    palette = {"red": [220, 20, 30], "blue": [30, 60, 230]}
    RunDir.open(tmp_path / "run", _cfg(palette=palette, hook=1), ignore=["batch_size", "hook"])
    RunDir.open(tmp_path / "run", _cfg(palette=palette), ignore=["batch_size", "hook"])  # an ignored key dropped
    with pytest.raises(RunMismatch, match=r"config 'palette\[order\]': on disk \['red', 'blue'\], now \['blue', 'red'\]"):
        RunDir.open(tmp_path / "run", _cfg(palette=dict(reversed(list(palette.items())))), ignore=["batch_size", "hook"])
    old = fingerprint(_cfg(palette=palette))
    written_before = type(old)({k: v for k, v in old.config.items() if not k.endswith("[order]")}, old.inputs)
    assert old.config["[order]"] == ["seed", "batch_size", "model", "prompts", "palette"]
    assert written_before.differences(old) == []  # a run.json without order entries still resumes


def test_input_content_is_compared_not_its_path(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("red circle\n")
    b.write_text("red circle\n")
    RunDir.open(tmp_path / "run", _cfg(prompts=str(a)), inputs={"prompts": a})
    RunDir.open(tmp_path / "run", _cfg(prompts=str(b)), inputs={"prompts": b})  # same content, other path
    b.write_text("blue square\n")
    with pytest.raises(RunMismatch, match="input 'prompts': content differs"):
        RunDir.open(tmp_path / "run", _cfg(prompts=str(b)), inputs={"prompts": b})


def test_overwrite_and_new(tmp_path):
    RunDir.open(tmp_path / "run", _cfg())
    (tmp_path / "run" / "stale.txt").write_text("x")
    run = RunDir.open(tmp_path / "run", _cfg(seed=5), if_exists="overwrite")
    assert not (run.path / "stale.txt").exists() and run.fingerprint.config["seed"] == 5
    other = RunDir.open(tmp_path / "run", _cfg(seed=6), if_exists="new")
    assert other.path.name == "run_1" and run.fingerprint.config["seed"] == 5


def test_foreign_non_empty_directory_is_refused(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "images").mkdir()
    with pytest.raises(RunMismatch, match="not a run directory"):
        RunDir.open(tmp_path / "run", _cfg())


def test_stage_markers(tmp_path):
    run = RunDir.open(tmp_path / "run", _cfg())
    assert not run.done("generate")
    run.mark_done("generate", {"images": 8})
    assert run.done("generate") and run.stage_info("generate")["images"] == 8


def test_fingerprint_ignores_sub_keys_of_an_ignored_key():
    fp = fingerprint({"hydra": {"run": {"dir": "x"}}, "seed": 1}, ignore=["hydra"])
    assert fp.config == {"seed": 1}
