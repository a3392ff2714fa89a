"""No import cycle inside a package of this repository: layers point one way.

Every import counts, wherever it is written: at module level, under ``if TYPE_CHECKING:``, in a
``try:``, or inside a function (where a cycle hides until the function runs). A package's
``__init__`` is not an import of its submodules' parent (Python runs it first anyway); an
explicit ``from . import name`` of it is.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Edge:
    target: str
    where: str  # file:line, and "in a function" when it is one


def modules(package: Path) -> dict[str, Path]:
    """Dotted name -> file, for every module of the package (``__init__`` as the package)."""
    out = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _in_functions(tree: ast.AST) -> set[ast.AST]:
    nodes: set[ast.AST] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            nodes.update(ast.walk(node))
    return nodes


def imports(package: Path) -> dict[str, list[Edge]]:
    """The package's graph: each module's imports of the package's own modules."""
    known = modules(package)
    graph: dict[str, list[Edge]] = {}
    for name, path in known.items():
        tree = ast.parse(path.read_text(), str(path))
        in_functions = _in_functions(tree)
        own = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        edges = []
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = own[: len(own) - node.level + 1]
                    base = ".".join(anchor + ([node.module] if node.module else []))
                # `from pkg import module` imports the module; `from pkg import name`, pkg
                targets = [
                    f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names
                ]
            else:
                continue
            where = f"{path.relative_to(package.parent)}:{node.lineno}"
            if node in in_functions:
                where += " in a function"
            for target in targets:
                # `import pkg.sub.mod` binds pkg but imports pkg.sub.mod: the longest known name
                while target not in known and "." in target:
                    target = target.rsplit(".", 1)[0]
                if target in known and target != name:
                    edges.append(Edge(target, where))
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, list[Edge]]) -> list[tuple[str, Edge]] | None:
    """One cycle as (module, the edge it leaves by) pairs, or None. Depth-first, iterative:
    each module is entered once, so it ends after at most one step per edge."""
    done: set[str] = set()
    for root in sorted(graph):
        if root in done:
            continue
        path: list[tuple[str, Edge]] = []
        on_path: dict[str, int] = {}
        stack = [(root, iter(graph[root]))]
        on_path[root] = 0
        while stack:
            name, edges = stack[-1]
            edge = next(edges, None)
            if edge is None:
                stack.pop()
                del on_path[name]
                done.add(name)
                if path:
                    path.pop()
                continue
            if edge.target in on_path:
                return [*path[on_path[edge.target] :], (name, edge)]
            if edge.target not in done:
                path.append((name, edge))
                on_path[edge.target] = len(path)
                stack.append((edge.target, iter(graph[edge.target])))
    return None


def describe(cycle: list[tuple[str, Edge]]) -> str:
    lines = [f"  {name} -> {edge.target}  ({edge.where})" for name, edge in cycle]
    return "import cycle:\n" + "\n".join(lines)


@pytest.mark.parametrize(
    "package",
    [
        "app_metrics",
        "assistant",
        "stack",
    ],
)
def test_no_import_cycle_within_the_package(package: str) -> None:
    cycle = find_cycle(imports(REPO / package))
    if cycle is not None:
        pytest.fail(describe(cycle), pytrace=False)


def test_the_check_sees_a_cycle_hidden_in_a_function(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("from .a import f\n")
    (package / "a.py").write_text("from .sub import b\n\ndef f():\n    return b\n")
    (package / "sub" / "__init__.py").write_text("")
    (package / "sub" / "b.py").write_text("def g():\n    from ..a import f\n    return f\n")
    (package / "c.py").write_text("import pkg.a\nfrom pkg import sub\n")
    graph = {name: [e.target for e in edges] for name, edges in imports(package).items()}
    assert graph == {
        "pkg": ["pkg.a"],
        "pkg.a": ["pkg.sub.b"],
        "pkg.c": ["pkg.a", "pkg.sub"],
        "pkg.sub": [],
        "pkg.sub.b": ["pkg.a"],
    }
    cycle = find_cycle(imports(package))
    assert cycle is not None
    assert [(name, edge.target) for name, edge in cycle] == [
        ("pkg.a", "pkg.sub.b"),
        ("pkg.sub.b", "pkg.a"),
    ]
    assert "in a function" in describe(cycle)
