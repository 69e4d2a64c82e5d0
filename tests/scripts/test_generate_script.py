"""scripts/generate.py end to end on the tiny config: layout, resume after a hard exit, batch size and process count."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO_ROOT

PROMPTS = ["a photo of a red circle", "a blue square", "three green triangle", "a yellow circle left of a red square",
           "two red square"]


def run(args, *, launcher=None, expect_rc=0):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    cmd = (launcher or [sys.executable]) + [str(REPO_ROOT / "scripts" / "generate.py"), "model=showo_tiny", *args]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == expect_rc, proc.stderr[-3000:]
    return proc


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def prompt_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("prompts") / "prompts.txt"
    path.write_text("\n".join(PROMPTS) + "\n")
    return path


@pytest.fixture(scope="module")
def reference(prompt_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("reference")
    run([f"prompts={prompt_file}", f"run_dir={out}", "images_per_prompt=2", "batch_size=4"])
    return tree(out / "images")


def test_layout(reference):
    assert sum(name.endswith("metadata.jsonl") for name in reference) == len(PROMPTS)
    assert "00004/samples/0001.png" in reference and "00000/grid.png" in reference
    assert b'"prompt": "a blue square"' in reference["00001/metadata.jsonl"]
    assert reference["00000/samples/0000.png"] != reference["00000/samples/0001.png"]


def test_killed_run_resumes_to_the_same_files(prompt_file, reference, tmp_path):
    # batch size 1 here (4 in the reference): the images must not depend on it either
    args = [f"prompts={prompt_file}", f"run_dir={tmp_path}", "images_per_prompt=2", "batch_size=1"]
    run(args + ["debug_exit_after_prompts=2"], expect_rc=17)
    partial = tree(tmp_path / "images")
    assert sum(name.endswith("metadata.jsonl") for name in partial) == 2
    run(args)
    assert tree(tmp_path / "images") == reference


def test_two_processes_give_the_same_files(prompt_file, reference, tmp_path):
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533"]
    run([f"prompts={prompt_file}", f"run_dir={tmp_path}", "images_per_prompt=2", "batch_size=2"], launcher=launcher)
    assert tree(tmp_path / "images") == reference
