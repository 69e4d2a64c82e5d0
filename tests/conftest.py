"""Pytest configuration shared by all tests (helpers to import live in ``tests/helpers.py``)."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import require_shared


@pytest.fixture
def shared_dir() -> Path:
    return require_shared()
