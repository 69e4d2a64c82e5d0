"""Helpers importable from any test module (``pytest.ini`` puts the repo root on ``sys.path``).

Shared data (fixtures of the official code, GenEval metadata and judge cases) is read in place from
``IMAGECOT_SHARED`` (default: ``../shared`` beside the repository). Tests that need it skip with the reason when absent.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("IMAGECOT_SHARED", REPO_ROOT.parent / "shared")).resolve()


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
