"""common.recipe.check names the environment variable behind an unusable setting before anything runs."""
from __future__ import annotations

import os

import pytest
from omegaconf import OmegaConf

from common.recipe import check, unset_variables
from common.validate import ConfigError

BASE = {"run_dir": "runs/x", "if_exists": "resume", "threads": 1}


def test_unset_variable_with_a_placeholder_default_is_named(monkeypatch):
    monkeypatch.delenv("IMAGECOT_TEST_CKPT", raising=False)
    cfg = OmegaConf.create({**BASE, "model": {"pretrained": "${oc.env:IMAGECOT_TEST_CKPT,???}"}})
    assert cfg.model.pretrained == "???"  # what a recipe used to receive as a path
    with pytest.raises(ConfigError, match=r"model.pretrained = .* \(environment variable IMAGECOT_TEST_CKPT is not set\)"):
        check(cfg, "recipe")
    monkeypatch.setenv("IMAGECOT_TEST_CKPT", "/some/dir")
    assert check(cfg, "recipe") == 1


def test_unresolvable_interpolations_are_named_and_plain_missing_values_stay_lazy(monkeypatch):
    monkeypatch.delenv("IMAGECOT_TEST_NONE", raising=False)
    cfg = OmegaConf.create({**BASE, "a": "${oc.env:IMAGECOT_TEST_NONE}", "b": "${oc.env:HOME,x}/y", "c": "???",
                            "d": "${oc.env:IMAGECOT_TEST_NONE,null}"})
    problems = unset_variables(cfg)
    assert len(problems) == 1 and problems[0].startswith("a = ") and "IMAGECOT_TEST_NONE" in problems[0]
    # "c" (a plain ???, e.g. iterative.prompts of scripts/train_dpo.py) fails only where it is read; "d" is a null
    assert OmegaConf.is_missing(cfg, "c") and cfg.d is None


def test_a_recipe_keeps_freed_memory_and_records_it(monkeypatch):
    import platform
    import subprocess
    import sys

    from common import env

    monkeypatch.delenv("IMAGECOT_MALLOC", raising=False)
    check(OmegaConf.create(BASE), "recipe")
    glibc = platform.libc_ver()[0] == "glibc"
    assert env.environment()["allocator"] == ("glibc, mmap threshold 32 MiB, no trim" if glibc
                                              else "system defaults (not glibc)")
    if glibc:  # set once, it stays set: a later opt-out in the same process is not reported as if it took effect
        monkeypatch.setenv("IMAGECOT_MALLOC", "default")
        assert env.keep_freed_memory() == "glibc, mmap threshold 32 MiB, no trim"
    # the opt-out, in a fresh process, is recorded as such
    code = ("from common.env import environment, keep_freed_memory; keep_freed_memory(); "
            "print(environment()['allocator'])")
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "IMAGECOT_MALLOC": "default"},
                         capture_output=True, text=True, check=True).stdout.strip()
    assert out == "system defaults (IMAGECOT_MALLOC=default)"


def test_the_allocator_benchmark_finds_the_same_images_both_ways():
    """benchmarks/bench_allocator.py: one run per allocator; where memory comes from changes no pixel."""
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    if not (repo / "checkpoints" / "shapes" / "showo" / "showo" / "config.json").is_file():
        pytest.skip("the committed shapes Show-o is missing")
    proc = subprocess.run([sys.executable, "benchmarks/bench_allocator.py", "--runs", "1", "--images-per-prompt", "1"],
                          cwd=repo, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "images identical across every run and both allocators: True" in proc.stdout
    assert "| glibc defaults |" in proc.stdout and "| freed memory kept |" in proc.stdout
