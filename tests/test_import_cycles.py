"""No import cycles inside the ``study`` package: each package reads in one direction.

An AST walk over ``study/**/*.py`` (nothing is imported): every ``import study...`` and
``from study... import ...`` (relative ones too), at module level or inside functions,
is an edge; ``from P import name`` points at module ``P.name`` when there is one, else at
``P``. Imports under ``if TYPE_CHECKING:`` count too: a cycle that only type checkers
follow still says two modules each need the other.

Beyond cycles, packages read in one direction (docs/ARCHITECTURE.md): the science
packages, then the trial, then the MLflow layout and the fronts, then the service, then
the command and the API; no package imports one later in that order.
"""

from __future__ import annotations

import ast
import itertools
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).parents[1]

Edges = dict[str, dict[str, int]]
"""module -> {imported module: line of the first such import}"""


def _modules(root: Path, package: str) -> dict[str, Path]:
    modules = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement, at any depth (``if TYPE_CHECKING:`` bodies included)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node


def import_graph(root: Path, package: str = "study") -> Edges:
    """The package's module-to-module imports."""
    modules = _modules(root, package)
    graph: Edges = {}
    for name, path in modules.items():
        here = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges: dict[str, int] = {}
        for node in _imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:
                    anchor = here.split(".")[: len(here.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                targets = [
                    f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                    for alias in node.names
                ]
            for target in targets:
                if target in modules and target != name:
                    edges.setdefault(target, node.lineno)
        graph[name] = edges
    return graph


def find_cycles(graph: Edges) -> list[list[str]]:
    """One cycle per strongly connected group of modules, as ``[a, b, ..., a]``."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in graph.get(node, {}):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            group = []
            while (member := stack.pop()) != node:
                group.append(member)
            group.append(node)
            if len(group) > 1:
                groups.append(group)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_cycle_in(graph, set(group)) for group in groups]


def _cycle_in(graph: Edges, group: set[str]) -> list[str]:
    """A shortest cycle through the group's first module (breadth-first)."""
    start = min(group)
    paths = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for other in sorted(graph[node]):
            if other == start:
                return [*paths[node], start]
            if other in group and other not in paths:
                paths[other] = [*paths[node], other]
                queue.append(other)
    raise AssertionError(f"no cycle through {start}")


def describe(graph: Edges, cycle: list[str]) -> str:
    """``a (line 3) -> b (line 92) -> a``: where each module imports the next."""
    steps = [f"{a} (line {graph[a][b]})" for a, b in itertools.pairwise(cycle)]
    return " -> ".join([*steps, cycle[-1]])


def test_no_module_in_study_imports_a_module_that_imports_it_back():
    graph = import_graph(ROOT)
    assert "study.pareto.front" in graph and "study.filters.spec" in graph
    cycles = [describe(graph, cycle) for cycle in find_cycles(graph)]
    assert not cycles, "import cycles in study:\n" + "\n".join(cycles)


def test_the_walk_finds_cycles_through_function_level_and_relative_imports(tmp_path):
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("from pkg.sub.a import A\n")
    (package / "sub" / "a.py").write_text("from . import b\nA = 1\n")
    (package / "sub" / "b.py").write_text("def f():\n    from pkg.sub.c import C\n")
    (package / "sub" / "c.py").write_text("import pkg.sub.a\nC = 1\n")
    (package / "d.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import e\n"
    )
    (package / "e.py").write_text("from pkg import d\n")
    graph = import_graph(tmp_path, "pkg")
    assert graph["pkg.sub.b"] == {"pkg.sub.c": 2}
    assert graph["pkg.d"] == {"pkg.e": 3}  # a type-only import is an edge too
    cycles = find_cycles(graph)
    assert cycles == [
        ["pkg.d", "pkg.e", "pkg.d"],
        ["pkg.sub.a", "pkg.sub.b", "pkg.sub.c", "pkg.sub.a"],
    ]
    assert describe(graph, cycles[1]) == (
        "pkg.sub.a (line 1) -> pkg.sub.b (line 2) -> pkg.sub.c (line 1) -> pkg.sub.a"
    )


#: The order packages read in: each may import its own layer and those before it.
LAYERS = (
    (
        "study.inputs",
        "study.settings",
        "study.secrets",
        "study.paths",
        "study.labels",
        "study.lazy",
    ),
    ("study.filters", "study.data"),
    ("study.layers",),
    ("study.models", "study.metrics", "study.convert"),
    ("study.trial", "study.demo"),
    ("study.mlflow_layout",),
    ("study.pareto",),
    ("study.service",),
    ("study.api", "study.browse", "study.cli", "study.__main__", "study"),
)


def layer_of(module: str) -> int:
    """The position of ``module``'s package in :data:`LAYERS`."""
    for index, packages in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in packages if p != "study"):
            return index
    assert module == "study", f"{module}: in no layer of LAYERS"
    return len(LAYERS) - 1


def test_packages_import_only_packages_before_them():
    """No upward import: the trial never imports the service, the fronts and the MLflow
    layout never import the service, the science packages never import the trial."""
    graph = import_graph(ROOT)
    upward = [
        f"{module} (line {line}) imports {target}"
        for module, edges in sorted(graph.items())
        for target, line in edges.items()
        if layer_of(target) > layer_of(module)
    ]
    assert not upward, "upward imports:\n" + "\n".join(upward)
