"""The package layout of gfn_envs: no import circle between its modules (every import statement
counts, also under ``TYPE_CHECKING`` and inside functions), and gfn_envs never imports gfn_agents."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "gfn_envs"


def import_graph() -> dict[str, set[str]]:
    """Module → the gfn_envs / gfn_agents modules it imports (a package import counts as an
    import of the package's ``__init__``)."""
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            for target in targets:
                if target.split(".")[0] == "gfn_agents":
                    graph[name].add(target)
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_gfn_envs_has_no_import_circle() -> None:
    graph = import_graph()
    assert cycles(graph) == []


def test_cycle_finder_finds_a_planted_circle() -> None:
    graph = import_graph()
    graph["gfn_envs.task"].add("gfn_envs.guides")  # guides imports task
    assert ["gfn_envs.guides", "gfn_envs.task"] in cycles(graph)


def test_gfn_envs_never_imports_gfn_agents() -> None:
    graph = import_graph()
    assert not [(m, t) for m, targets in graph.items() for t in targets if "gfn_agents" in t]
