"""The import rules of ARCHITECTURE.md ("Rules the layers keep"), read from the source with ``ast``.

Every import counts: module level, inside functions, and under ``if TYPE_CHECKING:`` (a loop that only the type
checker sees is still a loop in the design). ``from asyncq.p import name`` is an import of the submodule
``asyncq.p.name`` when that module exists, else of ``asyncq.p``. A package's ``__init__`` counts as the package.

- The core never imports the Celery wing (``asyncq.compat``, ``asyncq.celery_protocol``); the edges that wire
  both (``cli``, ``demo``) and the wing's own tools (``migrate``) may.
- No import loops among the modules of ``asyncq.compat`` or among those of ``asyncq.worker``.
- No function-level imports of asyncq modules inside ``asyncq.compat`` (they hide loops).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from asyncq.migrate._parse import parse  # CPython 3.11.7's spurious SystemError in ast.parse

SRC = Path(__file__).resolve().parent.parent / "src"
PACKAGE = SRC / "asyncq"
WING = ("asyncq.compat", "asyncq.celery_protocol")
EDGES = ("asyncq.cli", "asyncq.demo", "asyncq.migrate")  # may import both the core and the wing
LOOP_FREE = ("asyncq.compat", "asyncq.worker")


@dataclass(frozen=True)
class Import:
    importer: str
    imported: str
    line: int
    late: bool  # inside a function


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _resolve(importer: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    is_package = MODULES[importer].name == "__init__.py"
    base = importer.split(".")
    base = base[: len(base) - node.level + (1 if is_package else 0)]
    return ".".join([*base, node.module] if node.module else base)


def imports_of(name: str) -> Iterator[Import]:
    tree = parse(MODULES[name].read_text(encoding="utf-8"))

    def visit(node: ast.AST, late: bool) -> Iterator[Import]:
        for child in ast.iter_child_nodes(node):
            inner = late or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            if isinstance(child, ast.Import):
                for alias in child.names:
                    yield Import(name, alias.name, child.lineno, late)
            elif isinstance(child, ast.ImportFrom):
                base = _resolve(name, child)
                for alias in child.names:
                    sub = f"{base}.{alias.name}"
                    yield Import(name, sub if sub in MODULES else base, child.lineno, late)
            yield from visit(child, inner)

    return (i for i in visit(tree, False) if within(i.imported, ("asyncq",)))


ALL_IMPORTS = [i for name in sorted(MODULES) for i in imports_of(name)]


def test_the_scan_sees_the_modules_and_their_imports() -> None:
    """Guards the test itself: it finds the packages and the kinds of import it is about."""
    assert "asyncq.compat.app" in MODULES and "asyncq.worker.lifecycle" in MODULES
    pairs = {(i.importer, i.imported) for i in ALL_IMPORTS}
    assert ("asyncq.worker.lifecycle", "asyncq.worker.executor") in pairs
    assert ("asyncq.cli.commands", "asyncq.compat.celery_consumer") in pairs  # a function-level one
    assert ("asyncq.compat", "asyncq.compat.app") in pairs  # an __init__ re-export


def test_the_core_never_imports_the_celery_wing() -> None:
    bad = [f"{MODULES[i.importer].relative_to(SRC)}:{i.line} imports {i.imported}" for i in ALL_IMPORTS
           if not within(i.importer, WING + EDGES) and within(i.imported, WING)]
    assert not bad, "core modules import the Celery wing (make it a JobSource or move it into the wing):\n" + \
        "\n".join(bad)


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path that ends where it starts, or None."""
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def dfs(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state and (found := dfs(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := dfs(start)):
            return found
    return None


@pytest.mark.parametrize("package", LOOP_FREE)
def test_no_import_loops_inside(package: str) -> None:
    graph: dict[str, set[str]] = {}
    for i in ALL_IMPORTS:
        inside = within(i.importer, (package,)) and within(i.imported, (package,)) and i.importer != i.imported
        if inside:
            graph.setdefault(i.importer, set()).add(i.imported)
    cycle = find_cycle(graph)
    assert cycle is None, f"import loop in {package}: {' -> '.join(cycle or [])}"


def test_no_function_level_imports_inside_compat() -> None:
    late = [f"{MODULES[i.importer].relative_to(SRC)}:{i.line} imports {i.imported}" for i in ALL_IMPORTS
            if i.late and within(i.importer, ("asyncq.compat",))]
    assert not late, "function-level imports in asyncq.compat (import at module level; a loop needs a lower " \
        "module, see ARCHITECTURE.md):\n" + "\n".join(late)
