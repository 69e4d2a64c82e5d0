"""The Table 1 row scripts (scripts/geneval/*.sh) and the recipes they call refuse, before anything runs, what would
make a wrong row (issue 14): metadata, sampler, DPO batch, PARM++ corrector, unset checkpoint variables, ``-P``."""
from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from common.validate import ConfigError
from dpo.data import accumulation
from dpo.iterative import launcher_processes
from tests.helpers import REPO_ROOT, compose_entry, load_recipe

ROWS = sorted(p.stem for p in (REPO_ROOT / "scripts" / "geneval").glob("*.sh") if p.stem != "evaluate")
OFFICIAL_SAMPLING = {"guidance_scale": 1.75, "num_inference_steps": 18}  # showo.md §9, imagegen_cot.md §2
# Janus-Pro rows (imagegen_cot.md §10.5, T2I-R1): the official image sampler, guidance 5, T = 1, no top-k
# (t2i_r1.md §4.2); rows_per_step only sets where search strategies look, not the codes drawn
JANUS_OFFICIAL_SAMPLING = {"guidance_scale": 5.0, "temperature": 1.0, "top_k": None}
OFFICIAL = {"showo_256": OFFICIAL_SAMPLING, "showo_bundle": OFFICIAL_SAMPLING, "janus_pro_7b": JANUS_OFFICIAL_SAMPLING}


# ---------------------------------------------------------------------------------------------------- dry runs
@pytest.fixture(scope="module")
def dry_runs(tmp_path_factory):
    """Every row script run with a stub ``python`` that records its command lines: script name -> list of argv."""
    root = tmp_path_factory.mktemp("dry")
    stub = root / "bin" / "python"
    stub.parent.mkdir()
    stub.write_text('#!/usr/bin/env bash\n{ printf "%s\\n" "--- $PWD"; printf "%s\\n" "$@"; } >> "$STUB_LOG"\n')
    stub.chmod(0o755)
    meta = root / "my_metadata.jsonl"
    env = {**os.environ, "PATH": f"{stub.parent}:{os.environ['PATH']}", "GENEVAL_METADATA": str(meta),
           "DPO_PROMPTS": str(root / "train.txt"), "PARMPP_PROMPTS": str(root / "train.txt"),
           "PRM_PROMPTS": str(root / "train.txt")}
    env.pop("LAUNCHER", None)
    env.pop("DPO_PROCESSES", None)
    calls = {}
    for row in ROWS:
        log = root / f"{row}.log"
        proc = subprocess.run(["bash", str(REPO_ROOT / "scripts" / "geneval" / f"{row}.sh")], cwd=root,
                              env={**env, "STUB_LOG": str(log), "RUN": str(root / row)}, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        chunks = log.read_text().split("--- ")[1:]
        calls[row] = [chunk.splitlines()[1:] for chunk in chunks]
    return meta, calls


def _script(argv: list[str]) -> str:
    return Path(argv[0]).name


def _value(argv: list[str], key: str) -> str | None:
    found = [a.split("=", 1)[1] for a in argv if a.startswith(f"{key}=")]
    return found[-1] if found else None


@pytest.mark.parametrize("row", ROWS)
def test_the_metadata_that_generates_is_the_metadata_that_scores(dry_runs, row):
    meta, calls = dry_runs
    generation = [c for c in calls[row] if _script(c) == "run_search.py"]
    evaluation = [c for c in calls[row] if _script(c) == "eval_geneval.py"]
    assert generation and evaluation, calls[row]
    assert {_value(c, "prompts") for c in generation} == {str(meta)}
    assert {_value(c, "eval.metadata") for c in evaluation} == {str(meta)}  # evaluate.sh used to drop it


@pytest.mark.parametrize("row", ROWS)
def test_rows_sample_with_their_generators_official_settings(dry_runs, row):
    """No row overrides the sampler; the model configs they name sample with the official settings: Show-o 18 steps
    and guidance 1.75, Janus-Pro guidance 5, T = 1, no top-k."""
    _, calls = dry_runs
    for argv in calls[row]:
        assert not [a for a in argv if a.startswith("model.sampling")], argv
        if _script(argv) in ("run_search.py", "iterative_dpo.py"):
            model = _value(argv, "model") or "showo_256"
            assert model in OFFICIAL, argv
            assert (model == "janus_pro_7b") == row.startswith("janus"), argv
            sampling = dict(compose_entry("run_search", ["prompts=p", f"model={model}"]).model.sampling)
            assert {k: sampling.get(k) for k in OFFICIAL[model]} == OFFICIAL[model], sampling
            if model != "janus_pro_7b":
                assert sampling == OFFICIAL_SAMPLING


@pytest.mark.parametrize("row", [r for r in ROWS if r.startswith("dpo") or r == "integrated"])
def test_dpo_rows_launch_a_process_count_that_divides_the_paper_batch(dry_runs, row):
    _, calls = dry_runs
    launchers = [_value(c, "iterative.launcher") for c in calls[row] if _script(c) == "iterative_dpo.py"]
    assert launchers, calls[row]
    for text in launchers:
        launcher = text.strip("[]").split(",")
        processes = launcher_processes(launcher)
        assert processes is not None and 10 % processes == 0, text
        assert accumulation(10, None, processes) == (10 // processes, 1)


def test_paper_batch_over_eight_processes_is_refused_before_generating(tmp_path):
    """The 8-GPU launcher of configs/accelerate/ddp.yaml cannot split 10 pairs: iterative_dpo stops before round 0."""
    ddp = REPO_ROOT / "configs" / "accelerate" / "ddp.yaml"
    assert launcher_processes(["accelerate", "launch", "--config_file", str(ddp)]) == 8
    assert launcher_processes(["accelerate", "launch", f"--config_file={ddp}", "--num_processes", "5"]) == 5
    assert launcher_processes(None) == 1 and launcher_processes(["accelerate", "launch"]) is None
    with pytest.raises(ConfigError, match=r"not a multiple of 8 process.*\[1, 2, 5, 10\]"):
        accumulation(10, None, 8)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red circle\n")
    cfg = compose_entry("train_dpo", ["model=showo_tiny", "reward@iterative.judge=orm_finetuned",
                                    f"iterative.prompts={prompts}", f"iterative.launcher=[accelerate,launch,"
                                    f"--config_file,{ddp}]", f"run_dir={tmp_path / 'run'}"])
    assert cfg.train.global_batch_size == 10 and cfg.train.per_device_batch_size is None  # the paper's batch
    with pytest.raises(ConfigError, match="8 process"):
        load_recipe("iterative_dpo").run(cfg)
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------------------------- refusals before anything runs
def test_unset_checkpoint_variable_is_named_before_anything_runs(tmp_path, monkeypatch):
    for name in ("SHOWO_CKPT", "MAGVIT_CKPT", "PHI_TOKENIZER"):
        monkeypatch.delenv(name, raising=False)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red circle\n")
    cfg = compose_entry("run_search", [f"prompts={prompts}", f"run_dir={tmp_path / 'run'}", "device=cpu"])
    with pytest.raises(ConfigError) as err:
        load_recipe("run_search").run(cfg)
    message = str(err.value)
    assert "SHOWO_CKPT" in message and "model.bundle.pretrained" in message and "MAGVIT_CKPT" in message
    assert not (tmp_path / "run").exists()


def test_parmpp_refuses_the_base_model_as_corrector_unless_asked(tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red circle\n")
    base = ["model=showo_tiny", "search=parmpp", "reward=parmpp", f"prompts={prompts}", "device=cpu",
            f"run_dir={tmp_path / 'run'}"]
    recipe = load_recipe("run_search")
    with pytest.raises(ConfigError, match="search.corrector is not set"):
        recipe.run(compose_entry("run_search", base))
    with pytest.raises(ConfigError, match="directory not found"):
        recipe.run(compose_entry("run_search", [*base, f"search.corrector={tmp_path / 'nowhere'}"]))
    assert not (tmp_path / "run").exists()
    recipe.check_corrector(compose_entry("run_search", [*base, "search.corrector=searched"]))  # asked explicitly


def test_parmpp_row_searches_with_a_self_correction_fine_tuned_show_o(dry_runs):
    """Table 5's setting: the Show-o fine-tuned on the reflection data searches and corrects (paper §7)."""
    _, calls = dry_runs
    scripts = [_script(c) for c in calls["parmpp"]]
    assert scripts == ["build_reflection_data.py", "train_showo.py", "run_search.py", "eval_geneval.py"]
    data, train, search = calls["parmpp"][:3]
    groups = str(Path(_value(data, "run_dir")) / "self_correction")
    assert _value(train, "dataset") == "self_correction" and _value(train, "dataset.directory") == groups
    final = str(Path(_value(train, "run_dir")) / "final")
    assert _value(search, "model") == "showo_bundle" and _value(search, "model.bundle.directory") == final
    assert _value(search, "search.corrector") == "searched"
    assert "search=parmpp" in search and "reward=parmpp" in search


# ------------------------------------------------------------------------------------------------ plain python
def test_no_script_shadows_a_package_and_no_doc_needs_python_dash_p():
    packages = {p.parent.name for p in REPO_ROOT.glob("*/__init__.py")}
    assert not [p.name for p in (REPO_ROOT / "scripts").glob("*.py") if p.stem in packages]
    hits = subprocess.run(["grep", "-rn", "python -P", "README.md", "docs", "scripts"], cwd=REPO_ROOT,
                          capture_output=True, text=True).stdout
    assert hits == ""


def test_setup_states_the_supported_python_versions():
    import sys

    text = (REPO_ROOT / "setup.py").read_text()
    required = re.search(r'python_requires="([^"]+)"', text).group(1)
    assert required == ">=3.11", required
    assert sys.version_info >= (3, 11)
    assert "Programming Language :: Python :: 3.11" in text
    assert "Python 3.11" in (REPO_ROOT / "README.md").read_text()


def test_row_lib_quotes_survive_paths_with_spaces(tmp_path):
    """RUN and the metadata path reach the recipes as single arguments even with spaces in them."""
    stub = tmp_path / "bin" / "python"
    stub.parent.mkdir()
    stub.write_text('#!/usr/bin/env bash\nprintf "%s\\n" "$@" >> "$STUB_LOG"\n')
    stub.chmod(0o755)
    log = tmp_path / "log"
    run = tmp_path / "my run"
    env = {**os.environ, "PATH": f"{stub.parent}:{os.environ['PATH']}", "STUB_LOG": str(log),
           "GENEVAL_METADATA": str(tmp_path / "my meta.jsonl"), "RUN": str(run)}
    subprocess.run(["bash", str(REPO_ROOT / "scripts" / "geneval" / "baseline.sh")], env=env, check=True)
    args = log.read_text().splitlines()
    assert f"run_dir={run}/search" in args and f"eval.metadata={tmp_path / 'my meta.jsonl'}" in args
    assert shlex.quote(str(run)) != str(run)  # the path really has a space
