"""Layering (HELPERS.md): ``reward_models`` never imports ``eval``, ``search``, ``dpo`` or ``grpo``; the judge-data
builder gets its labeller and scene source injected (scripts/build_judge_data.py wires the shapes world)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "reward_models"
FORBIDDEN = ("eval", "search", "dpo", "grpo")


def _imported_modules(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = []
    for node in ast.walk(tree):  # also imports inside functions
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
    return names


@pytest.mark.parametrize("path", sorted(PACKAGE.glob("*.py")), ids=lambda p: p.name)
def test_reward_models_imports_no_higher_layer(path):
    bad = [name for name in _imported_modules(path) if name.split(".")[0] in FORBIDDEN]
    assert not bad, f"{path.name} imports {bad}: reward_models must not import {FORBIDDEN}"


def test_the_scan_sees_imports():
    assert "reward_models.rollouts" in _imported_modules(PACKAGE / "judge_data.py")
