"""Tiny random Janus-Pro bundles shared by the Janus tests (built once per session; nothing downloaded)."""
from __future__ import annotations

import pytest
import torch

from janus.tiny import build_tiny_janus

WORDS = "a photo of red blue green cat dog bench cup on left right two three the small big".split()


@pytest.fixture(scope="session")
def tiny64():
    """float64: numerics where parity must be exact (loop vs teacher forcing, vs transformers)."""
    return build_tiny_janus(WORDS, seed=0, dtype=torch.float64)


@pytest.fixture(scope="session")
def tiny32():
    """float32: the dtype batch-independence must survive in."""
    return build_tiny_janus(WORDS, seed=0, dtype=torch.float32)


@pytest.fixture(scope="session")
def tiny_bf16():
    """bfloat16: the dtype of real-scale runs."""
    return build_tiny_janus(WORDS, seed=0, dtype=torch.bfloat16)
