"""Pytest configuration shared by all tests (helpers to import live in ``tests/helpers.py``)."""
from __future__ import annotations

from pathlib import Path

import pytest
import tqdm

from tests.helpers import require_shared

# No tqdm monitor thread: it takes tqdm's write lock every few seconds, and a test that forks a child
# (tests/catalogue/test_kill_resume.py) while it holds the lock leaves the child waiting on it for ever (seen once: a
# forked generate recipe hung at its first progress bar).
tqdm.std.tqdm.monitor_interval = 0


@pytest.fixture
def shared_dir() -> Path:
    return require_shared()
