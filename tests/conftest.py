"""Shared test helpers.

Tests read the project's shared data (fixtures of the official code, GenEval metadata, judge cases) in place,
through the environment variable ``IMAGECOT_SHARED`` (default: ``../shared`` next to the repository root).
A test that needs it skips with a clear reason when it is absent; nothing from it is copied into the repo.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_root() -> Path:
    return Path(os.environ.get("IMAGECOT_SHARED", REPO_ROOT.parent / "shared")).resolve()


def require_shared(*parts: str) -> Path:
    """Path under the shared folder, or skip the calling test with the reason."""
    path = shared_root().joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared data not found: {path} (set IMAGECOT_SHARED to the folder holding fixtures/ and geneval/)")
    return path


@pytest.fixture
def shared_dir() -> Path:
    return require_shared()


@pytest.fixture(autouse=True)
def _deterministic_threads():
    # Parity with the fixtures does not depend on the thread count, but tests are faster and steadier with few threads.
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    yield
