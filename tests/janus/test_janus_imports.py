"""``janus/`` sits at the bottom of the layering (beside ``showo/``): it imports no other project package."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

JANUS = Path(__file__).resolve().parents[2] / "janus"
PROJECT_PACKAGES = {"showo", "search", "eval", "dpo", "grpo", "reward_models", "scripts", "benchmarks", "tests"}


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("path", sorted(JANUS.glob("*.py")), ids=lambda p: p.name)
def test_janus_imports_no_project_package(path):
    assert not imported_roots(path) & PROJECT_PACKAGES, f"{path.name} imports {imported_roots(path) & PROJECT_PACKAGES}"
