"""The tiny world of the catalogue tests, built once per session (tests/catalogue/world.py)."""
from __future__ import annotations

import pytest

from tests.catalogue.world import World, build_world


@pytest.fixture(scope="session")
def world(tmp_path_factory) -> World:
    return build_world(tmp_path_factory.mktemp("catalogue_world"))
