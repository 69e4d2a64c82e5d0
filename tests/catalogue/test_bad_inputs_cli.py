"""A representative subset of the bad-input catalogue through the real command line: exit code != 0, the message on
stderr names the key / value / file, and no run directory is left (or an existing one is left untouched).

The commands run as subprocesses two at a time (the machines this runs on have two cores); every case asserts on its
own result. The in-process catalogue (test_bad_inputs.py) covers every kind; this file proves the command line turns
those errors into a failing exit status, including the ones that used to exit 0 (divergence, an empty prompt set).
"""
from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest

from tests.catalogue.bad_files import pairs, text_files
from tests.catalogue.world import REPO, base_overrides, child_env, config, recipe, tree


@dataclass(frozen=True)
class Cli:
    id: str
    script: str
    args: tuple[str, ...]
    names: tuple[str, ...]
    run_dir: str = "run"  # relative to the case's folder
    existing: bool = False  # run_dir holds a finished run of the recipe's base config first


CASES = [
    Cli("steps_abc", "generate", ("model.sampling.num_inference_steps=abc",), ("num_inference_steps = 'abc'",)),
    Cli("batch_size_0", "generate", ("batch_size=0", "images_per_prompt=0"),
        ("2 invalid settings", "batch_size = 0", "images_per_prompt = 0")),
    Cli("prompts_empty", "generate", ("prompts={tmp}/empty.txt",), ("empty.txt: holds no prompts",)),
    Cli("unknown_option", "generate", ("model=showo_nope",), ("showo_nope",)),
    Cli("judge_of_wrong_kind", "run_search", ("search=parm", "reward=orm_zeroshot"),
        ("search_judge/parm/orm_zeroshot",)),
    Cli("per_device_batch_size_0", "train_showo", ("per_device_batch_size=0", "checkpoint_every=0"),
        ("per_device_batch_size = 0", "checkpoint_every = 0")),
    Cli("pairs_malformed", "train_dpo", ("data.pairs={tmp}/malformed.jsonl",), ("malformed.jsonl:2: not valid JSON",)),
    Cli("divergence", "train_dpo", ("train.optimizer.lr=1e10", "train.epochs=2", "train.warmup_ratio=0"),
        ("training diverged at step 2", "no final weights written")),
    Cli("another_config", "generate", ("seed=7",), ("config 'seed': on disk 0, now 7",), existing=True),
]


def _command(case: Cli, world, tmp) -> list[str]:
    args = [a.format(tmp=tmp) for a in (*base_overrides(case.script, world), *case.args)]
    return [sys.executable, str(REPO / "scripts" / f"{case.script}.py"), *args, f"run_dir={tmp / case.run_dir}"]


@pytest.fixture(scope="module")
def results(world, tmp_path_factory):
    """case id -> (its folder, completed process, the run dir's files before the command)."""
    prepared = {}
    for case in CASES:
        tmp = tmp_path_factory.mktemp(case.id)
        text_files(world, tmp)
        pairs(world, tmp)
        if case.existing:
            recipe(case.script).run(config(case.script, world, tmp / case.run_dir))
        prepared[case.id] = (tmp, tree(tmp / case.run_dir, skip=()) if case.existing else None)

    def launch(case):
        tmp = prepared[case.id][0]
        return subprocess.run(_command(case, world, tmp), cwd=REPO, env=child_env(), capture_output=True, text=True,
                              timeout=300)

    with ThreadPoolExecutor(max_workers=2) as pool:
        done = dict(zip([c.id for c in CASES], pool.map(launch, CASES)))
    return {cid: (prepared[cid][0], proc, prepared[cid][1]) for cid, proc in done.items()}


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.script}:{c.id}")
def test_command_line_fails_naming_the_input(case, results):
    tmp, proc, before = results[case.id]
    assert proc.returncode != 0, proc.stdout[-2000:]
    for name in case.names:
        assert name in proc.stderr, proc.stderr[-3000:]
    run_dir = tmp / case.run_dir
    if before is not None:
        assert tree(run_dir, skip=()) == before  # the other config's run, untouched
    elif case.id == "divergence":
        assert (run_dir / "metrics.jsonl").is_file() and not (run_dir / "final").exists()
    else:
        assert not run_dir.exists()
