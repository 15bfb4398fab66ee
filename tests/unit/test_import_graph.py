"""The product package's modules import each other without cycles.

Read from the source (``import`` and ``from`` statements; ``if TYPE_CHECKING:`` blocks are only for the type
checker and left out). At module level the graph must be acyclic. Imports inside functions, made to keep a
heavy dependency (the Kubernetes client, ZenML's step machinery) off a module's load, must not hide a cycle
either, except along the edges named in ``LAZY_BY_DESIGN``.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = "k8s_step_operator"
SRC = Path(__file__).resolve().parents[2] / "src" / PACKAGE

# Edges that close a cycle on purpose: the far side is loaded only when it is used.
LAZY_BY_DESIGN = {
    # ZenML asks a flavor for its implementation class; that class imports the flavor's config.
    ("flavor", "step_operator"),
    # A step's function, rebuilt by name in any process, loads its runtime (and the client) when it runs.
    ("steps.entrypoints", "steps.resource_runtime"),
    ("steps.entrypoints", "steps.volume_runtime"),
    ("steps.entrypoints", "steps.custom_task_runtime"),
    ("steps.entrypoints", "steps.cel_values"),
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(path): path for path in SRC.rglob("*.py")}


class _Imports(ast.NodeVisitor):
    """The package's modules one module imports: (target, at module level)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.package = name if MODULES[name].name == "__init__.py" else name.rpartition(".")[0]
        self.depth = 0
        self.found: set[tuple[str, bool]] = set()

    def visit_If(self, node: ast.If) -> None:
        if "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                self.visit(child)
            return
        self.generic_visit(node)

    def _nested(self, node: ast.AST) -> None:
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _nested

    def _add(self, dotted: str) -> None:
        if dotted == PACKAGE or dotted.startswith(PACKAGE + "."):
            local = dotted[len(PACKAGE) + 1 :]
            while local and local not in MODULES:
                local = local.rpartition(".")[0]
            if local != self.name and local in MODULES:
                self.found.add((local, self.depth == 0))

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(alias.name)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            base = self.package.split(".") if self.package else []
            base = base[: len(base) - (node.level - 1)]
            target = ".".join([PACKAGE, *base, *([node.module] if node.module else [])])
        else:
            target = node.module or ""
        for alias in node.names:
            self._add(f"{target}.{alias.name}")


def _graph(module_level_only: bool) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        visitor = _Imports(name)
        visitor.visit(ast.parse(path.read_text()))
        graph[name] = {
            target for target, top in visitor.found
            if (top or not module_level_only) and (name, target) not in LAZY_BY_DESIGN
        }
    return graph


def _a_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One cycle (as a path that returns to its start), or [] when the graph is acyclic."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state:
                found = visit(target)
                if found:
                    return found
        state[node] = 2
        path.pop()
        return []

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return []


def test_the_reader_sees_the_known_edges() -> None:
    graph = _graph(module_level_only=False)
    assert "settings" in graph["manifest"] and "kube.client" in graph["steps.resource_runtime"]
    assert "steps.discovery" in graph["steps.resource_runtime"]  # ``from . import discovery``
    assert "step_operator" not in graph["flavor"]  # only lazily, by design


def test_module_level_imports_have_no_cycle() -> None:
    assert _a_cycle(_graph(module_level_only=True)) == []


def test_imports_inside_functions_hide_no_cycle() -> None:
    assert _a_cycle(_graph(module_level_only=False)) == []
