"""Helpers importable from any test module (``pytest.ini`` puts the repo root on ``sys.path``).

Shared data (fixtures of the official code, GenEval metadata and judge cases) is read in place from
``IMAGECOT_SHARED`` (default: ``../shared`` beside the repository). Tests that need it skip with the reason when absent.
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("IMAGECOT_SHARED", REPO_ROOT.parent / "shared")).resolve()
# A MAGVIT-v2 small enough for CPU tests: ``build_tiny_showo(words, vq=TINY_VQ)`` (resolution 16, 2**6 codes).
TINY_VQ = dict(ch=16, encoder_ch_mult=[1, 2, 2], encoder_num_res_blocks=[1, 1, 1], decoder_ch_mult=[1, 2, 2],
               decoder_num_res_blocks=[1, 1, 1], z_channels=6, codebook_dim=6, num_groups=8, resolution=16)


def require_shared(*parts: str) -> Path:
    """Path under the shared folder, or skip the calling test with the reason."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared data not found: {path} (set IMAGECOT_SHARED to the folder holding fixtures/ and geneval/)")
    return path


def load_manifest(*parts: str) -> dict:
    """A fixture manifest at collection time ({} when the shared folder is absent: the tests then skip)."""
    path = SHARED.joinpath(*parts)
    return json.loads(path.read_text()) if path.is_file() else {}


class Killed(BaseException):
    """Raised where a recipe would die: a ``BaseException``, so no ``except Exception`` on the way can swallow it."""


def raise_on_hard_exit(monkeypatch) -> None:
    """Make a recipe's kill switch (``os._exit(17)`` of its ``debug_exit_after_*`` setting) raise :class:`Killed`,
    so a test can resume the run it killed."""

    def hard_exit(code):
        raise Killed(code)

    monkeypatch.setattr(os, "_exit", hard_exit)


def shapes_eval_run(tmp_path_factory, *models: str) -> Path:
    """A run dir holding the shapes eval split's prompts (one per task, ``RUN/prompts``), for script tests that run the
    committed shapes checkpoints ``models`` (names under ``checkpoints/shapes``; a missing one skips the test)."""
    from eval.shapes.data import build_suite
    from eval.shapes.rows import write_prompt_sets

    for name in models:
        if not (REPO_ROOT / "checkpoints" / "shapes" / name).is_dir():
            pytest.skip(f"committed checkpoint missing: {REPO_ROOT / 'checkpoints' / 'shapes' / name}")
    run = tmp_path_factory.mktemp("run")
    write_prompt_sets(run / "prompts", build_suite("shapes32"), prompts_per_task=1)
    return run


def load_recipe(script: str | Path):
    """``scripts/<script>.py`` (or the script at a given ``Path``) as a module, so a test can call its ``run(cfg)``
    in-process: recipes are scripts, never imported by the library."""
    path = script if isinstance(script, Path) else REPO_ROOT / "scripts" / f"{script}.py"
    spec = importlib.util.spec_from_file_location(f"recipe_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def compose_entry(config: str, overrides=()):
    """``configs/<config>.yaml`` with ``overrides``, as ``python scripts/<recipe>.py <overrides>`` composes it."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(REPO_ROOT / "configs"), version_base="1.3"):
        return compose(config_name=config, overrides=list(overrides))


def read_metrics(run_dir) -> list[dict]:
    """The records of ``<run_dir>/metrics.jsonl``, one per logged step."""
    return [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


def compose_option(group: str, option: str, overrides=()):
    """``configs/<group>/<option>.yaml`` composed with its defaults (as a ``group=option`` choice would be), e.g.
    ``compose_option("reward", "parmpp")``; reading the file alone would miss the options it inherits."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(REPO_ROOT / "configs"), version_base="1.3"):
        cfg = compose(config_name=f"{group}/{option}", overrides=list(overrides))
    GlobalHydra.instance().clear()
    for part in group.split("/"):
        cfg = cfg[part]
    return cfg


def reward_on_tiny_judge(option: str, directory: Path):
    """``configs/reward/<option>.yaml`` instantiated on a tiny random LLaVA-OneVision judge saved in ``directory``
    (CPU, float32): the YAML's own wiring, without its checkpoint."""
    from hydra.utils import instantiate

    from reward_models.tiny import build_tiny_llava_onevision

    tiny = build_tiny_llava_onevision(directory)
    cfg = compose_option("reward", option)
    cfg.judge.model_dir, cfg.judge.device, cfg.judge.dtype = str(tiny), "cpu", "float32"
    return instantiate(cfg)


def assert_same_image(a, b, what: str = "image") -> None:
    """Two decodings of the same image tokens (PIL images or uint8 arrays): same size, pixels within one 8-bit level.

    The MAGVIT decoder computes in float32, and its last bits depend on the batch the tokens were decoded in and on
    the CPU's kernels; rounding to uint8 turns that into one level at pixels that sit within rounding of a .5
    boundary, never more. Another image differs by far more. The tokens themselves are compared exactly by the callers.
    """
    import numpy as np  # local: helpers.py is imported by every test module

    a, b = np.asarray(a, dtype=np.int16), np.asarray(b, dtype=np.int16)
    assert a.shape == b.shape, f"{what}: shape {a.shape} vs {b.shape}"
    worst = int(np.abs(a - b).max()) if a.size else 0
    assert worst <= 1, f"{what}: pixels differ by up to {worst} levels"


def run_script(script: str, *args) -> str:
    """``python scripts/<script> args...`` from the repo root, one thread, wandb off; asserts it succeeded (stderr's
    tail in the message) and returns its stdout."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    proc = subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / script), *map(str, args)], cwd=REPO_ROOT,
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@dataclass
class ScriptedVerdict:
    correct: bool
    reason: str = "scripted"


def parity_labeller(line, image) -> ScriptedVerdict:
    """A labeller for builders of judge data: accept an image iff the sum of its pixels is even (deterministic,
    about half of the images)."""
    import torch

    return ScriptedVerdict(int(torch.tensor(list(image.getdata())).sum()) % 2 == 0)
