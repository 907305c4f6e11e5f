"""The scripts under benchmarks/ are not run by the suite (they time things), so a rename in the
packages could break them unnoticed: every name they import from gfn_envs or gfn_agents exists."""

from __future__ import annotations

import ast
import importlib
import importlib.util
from pathlib import Path

import pytest

SCRIPTS = sorted((Path(__file__).resolve().parents[1] / "benchmarks").glob("*.py"))


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.name for s in SCRIPTS])
def test_benchmark_imports_only_existing_names(script: Path) -> None:
    imports = [
        node
        for node in ast.walk(ast.parse(script.read_text()))
        if isinstance(node, ast.ImportFrom)
        and node.module
        and node.module.split(".")[0] in ("gfn_envs", "gfn_agents")
    ]
    for node in imports:
        module = importlib.import_module(node.module)
        for alias in node.names:
            assert hasattr(module, alias.name) or importlib.util.find_spec(
                f"{node.module}.{alias.name}"
            ), f"{script.name}: {node.module} has no {alias.name}"
