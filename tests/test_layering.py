"""The house's arrows (ARCHITECTURE.md), held by a test: every import -- at module level or hidden inside a function --
points down the layers, and no two modules import each other, directly or through others.

    scripts -> dpo / grpo -> search -> eval -> reward_models -> showo / janus -> common

Packages of one layer do not import each other (showo <-> janus, dpo <-> grpo); a package may import itself freely
(cycles aside). Scripts are recipes: the library never imports them.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.helpers import REPO_ROOT

LAYERS = {"common": 0, "showo": 1, "janus": 1, "reward_models": 2, "eval": 3, "search": 4, "dpo": 5, "grpo": 5,
          "scripts": 6}


def module_name(path: Path, root: Path) -> str:
    rel = path.relative_to(root).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(source: str, module: str, is_package: bool) -> set[str]:
    """Every project module ``module`` imports, at any depth of its code (absolute and relative imports)."""
    found = set()
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)  # `from pkg import module`
    return {name for name in found if name.split(".")[0] in LAYERS}


def project_graph(root: Path) -> dict[str, set[str]]:
    """Module -> project modules it imports, for every .py file of the layered packages and of scripts/."""
    files = [p for top in LAYERS if (root / top).is_dir() for p in (root / top).rglob("*.py")
             if "__pycache__" not in p.parts]
    modules = {module_name(p, root): p for p in files}
    graph = {}
    for name, path in modules.items():
        targets = imports_of(path.read_text(), name, path.name == "__init__.py")
        # keep names that are modules (drop `from pkg.mod import Class` leftovers such as pkg.mod.Class)
        graph[name] = {t if t in modules else t.rpartition(".")[0] for t in targets}
        graph[name] = {t for t in graph[name] if t in modules and t != name}
    return graph


def violations(graph: dict[str, set[str]]) -> list[str]:
    """Imports that point up or sideways between layers."""
    out = []
    for module, targets in sorted(graph.items()):
        top = module.split(".")[0]
        for target in sorted(targets):
            other = target.split(".")[0]
            if other == top:
                continue
            if LAYERS[other] >= LAYERS[top]:
                out.append(f"{module} imports {target} ({top} is layer {LAYERS[top]}, {other} layer {LAYERS[other]})")
    return out


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Import cycles (each as a list of modules), found by depth-first search."""
    found, state, stack = [], {}, []

    def visit(node: str) -> None:
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                found.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return project_graph(REPO_ROOT)


def test_every_import_points_down_the_layers(graph):
    assert len(graph) > 100  # the walk found the code
    assert violations(graph) == []


def test_no_import_cycles_even_through_hidden_imports(graph):
    assert cycles(graph) == []


def test_the_checker_catches_a_wrong_import_and_a_hidden_cycle(tmp_path):
    """The same checks on a small tree with a deliberately wrong import (showo -> eval inside a function) and a
    cycle between two eval modules (one of them hidden in a function), as a regression test of the checker."""
    for rel, text in {
        "showo/__init__.py": "", "showo/model.py": "def f():\n    from eval.report import table\n",
        "eval/__init__.py": "", "eval/report.py": "from eval.plots import bars\n",
        "eval/plots.py": "def bars():\n    from .report import table\n", "common/__init__.py": "",
    }.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    small = project_graph(tmp_path)
    assert violations(small) == ["showo.model imports eval.report (showo is layer 1, eval layer 3)"]
    assert cycles(small) == [["eval.plots", "eval.report", "eval.plots"]]


def test_no_script_shadows_a_package():
    """`python scripts/X.py` puts scripts/ first on sys.path: a script named like a package would shadow it."""
    scripts = {p.stem for p in (REPO_ROOT / "scripts").rglob("*.py")}
    assert not scripts & set(LAYERS)
