"""The package's layers, read from the source with `ast`: imports point down only (TIERS),
only the command line uses the terminal libraries, only the store touches its tables, no
module imports another's private names, and no two modules import each other at import time.

Every import counts for the arrows, those inside functions and under TYPE_CHECKING too: a
deferred import is still a dependency. Only imports that run when a module is first imported
count for cycles, since only those can leave a module half-initialised.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

# Bottom to top. A layer may import itself and any layer of a lower tier; layers that share a
# tier are siblings and may not import each other. `spane_cli` is the package's own
# __init__ (it holds the version only); `__main__` is the `python -m spane_cli` entry.
TIERS: tuple[tuple[str, ...], ...] = (
    ("spane_cli", "errors", "states", "text", "timeutil", "config", "processes", "keeper"),
    ("workflow",),  # the language: loading, model, validation; knows no node implementation
    ("scheduler", "fires"),  # pure decisions over a workflow's nodes; when schedules fire
    ("store", "nodes"),  # the database; the node types. Neither knows the other.
    ("engine",),  # submit, dispatch, workers, reconciliation, `run --local`
    # measuring spane; injecting faults into a running spane; the HTTP API (`spane serve`);
    # the Python client (over HTTP, or in-process over the engine)
    ("bench", "faults", "api", "client"),
    ("cli",),
    ("__main__",),
)

# The terminal belongs to the command line: below it nothing prints tables or picks an exit
# code, so these libraries are imported by the `cli` layer only.
CLI_ONLY_LIBRARIES = ("typer", "click", "rich")

# The tables are the store's own: above it, reads go through `store.queries` (and views),
# writes through the `Store`, so no query is built outside the store.
STORE_PRIVATE_MODULES = ("spane_cli.store.models",)

PACKAGE = "spane_cli"
ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / PACKAGE


@dataclass(frozen=True)
class Import:
    file: str  # relative to the repository, for the failure message
    line: int
    importer: str  # the importing module
    target: str  # the module imported (`from a import b` names a.b when b is a module)
    names: tuple[str, ...]  # the names taken by `from ... import`, empty for `import x`
    at_import_time: bool  # at module level (not in a function, not under TYPE_CHECKING)

    def __str__(self) -> str:
        taken = f" ({', '.join(self.names)})" if self.names else ""
        return f"{self.file}:{self.line}: {self.importer} imports {self.target}{taken}"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(path): path for path in sorted(SOURCE.rglob("*.py"))}


def layer_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def allowed_layers() -> dict[str, frozenset[str]]:
    allowed: dict[str, frozenset[str]] = {}
    below: set[str] = set()
    for tier in TIERS:
        for layer in tier:
            allowed[layer] = frozenset(below | {layer})
        below.update(tier)
    return allowed


ALLOWED = allowed_layers()


def is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def import_statements(
    node: ast.AST, at_import_time: bool = True
) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import statement under `node`, with whether it runs when the module loads."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.Import | ast.ImportFrom):
            yield child, at_import_time
        elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            yield from import_statements(child, False)
        elif isinstance(child, ast.If) and is_type_checking(child.test):
            for statement in child.body:
                yield from import_statements(ast.Module([statement], []), False)
            for statement in child.orelse:
                yield from import_statements(ast.Module([statement], []), at_import_time)
        else:
            yield from import_statements(child, at_import_time)


def absolute(module: str, statement: ast.ImportFrom, is_package: bool) -> str:
    if not statement.level:
        return statement.module or ""
    base = module.split(".")
    if not is_package:
        base.pop()
    base = base[: len(base) - statement.level + 1]
    return ".".join([*base, *([statement.module] if statement.module else [])])


def imports_in(module: str, file: str, source: str, is_package: bool) -> Iterator[Import]:
    tree = ast.parse(source, filename=file)
    for statement, at_import_time in import_statements(tree):
        if isinstance(statement, ast.Import):
            for alias in statement.names:
                yield Import(file, statement.lineno, module, alias.name, (), at_import_time)
            continue
        base = absolute(module, statement, is_package)
        names = tuple(alias.name for alias in statement.names)
        submodules = [n for n in names if f"{base}.{n}" in MODULES]
        for name in submodules:
            yield Import(file, statement.lineno, module, f"{base}.{name}", (), at_import_time)
        rest = tuple(n for n in names if n not in submodules)
        if rest or not submodules:
            yield Import(file, statement.lineno, module, base, rest, at_import_time)


def imports_of(module: str, path: Path) -> Iterator[Import]:
    source = path.read_text(encoding="utf-8")
    yield from imports_in(module, str(path.relative_to(ROOT)), source, path.name == "__init__.py")


ALL_IMPORTS = [found for module, path in MODULES.items() for found in imports_of(module, path)]
OWN_IMPORTS = [
    found
    for found in ALL_IMPORTS
    if found.target == PACKAGE or found.target.startswith(PACKAGE + ".")
]


def test_every_module_has_a_layer() -> None:
    unknown = sorted(
        {f"{m} (layer {layer_of(m)!r})" for m in MODULES if layer_of(m) not in ALLOWED}
    )
    assert not unknown, "add these to TIERS in tests/test_layers.py: " + ", ".join(unknown)


WALKED = """
import os
from spane_cli import states, __version__
from . import sibling
if TYPE_CHECKING:
    from spane_cli.store.store import Store
else:
    import json
class Shape:
    import re
def later():
    from spane_cli.cli.app import main
"""


def test_the_walk_sees_imports_of_every_kind() -> None:
    """The checks below mean nothing if the walk misses deferred or relative imports."""
    found = {
        (i.target, i.names, i.at_import_time)
        for i in imports_in("spane_cli.engine.x", "x.py", WALKED, is_package=False)
    }
    assert found == {
        ("os", (), True),
        ("spane_cli.states", (), True),
        ("spane_cli", ("__version__",), True),
        ("spane_cli.engine", ("sibling",), True),
        ("spane_cli.store.store", ("Store",), False),
        ("json", (), True),
        ("re", (), True),
        ("spane_cli.cli.app", ("main",), False),
    }


def test_imports_point_down_only() -> None:
    upward = [
        f"{found}: layer {layer_of(found.importer)!r} may not import {layer_of(found.target)!r}"
        for found in OWN_IMPORTS
        if layer_of(found.target) not in ALLOWED.get(layer_of(found.importer), frozenset())
    ]
    assert not upward, "imports pointing up (TIERS in tests/test_layers.py):\n" + "\n".join(upward)


def test_only_the_cli_uses_terminal_libraries() -> None:
    outside = [
        f"{found}: only the cli layer may use {found.target.split('.')[0]}"
        for found in ALL_IMPORTS
        if found.target.split(".")[0] in CLI_ONLY_LIBRARIES
        and layer_of(found.importer) not in ("cli", "__main__")
    ]
    assert not outside, "terminal libraries below the cli:\n" + "\n".join(outside)


def test_only_the_store_touches_its_tables() -> None:
    outside = [
        f"{found}: read through spane_cli.store.queries, write through the Store"
        for found in OWN_IMPORTS
        if found.target in STORE_PRIVATE_MODULES and layer_of(found.importer) != "store"
    ]
    assert not outside, "the store's tables used outside it:\n" + "\n".join(outside)


# Private modules of other projects that have no public path yet, each with its reason.
PRIVATE_MODULES_ALLOWED = {
    # Typer 0.29 bundles its own Click as typer._click; completion classes registered with
    # the stand-alone click package would not be the ones Typer's commands use.
    "typer._click.shell_completion": "cli/global_options.py completes global options",
}


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def test_no_private_name_is_imported_from_another_module() -> None:
    private = [
        f"{found}: {', '.join(n for n in found.names if is_private(n))} is private to "
        f"{found.target}"
        for found in ALL_IMPORTS
        if any(is_private(name) for name in found.names)
    ]
    private += [
        f"{found}: a private module"
        for found in ALL_IMPORTS
        if any(is_private(part) for part in found.target.split("."))
        and found.target not in PRIVATE_MODULES_ALLOWED
    ]
    assert not private, "private names imported:\n" + "\n".join(private)


def import_time_graph() -> dict[str, dict[str, Import]]:
    graph: dict[str, dict[str, Import]] = {module: {} for module in MODULES}
    for found in OWN_IMPORTS:
        if found.at_import_time and found.target in MODULES and found.target != found.importer:
            graph[found.importer].setdefault(found.target, found)
    return graph


def find_cycle(graph: dict[str, dict[str, Import]]) -> list[Import] | None:
    """The imports along one cycle, or None. Depth-first, iterative (the graph is small, but
    recursion depth should not depend on it)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for start in graph:
        if start in state:
            continue
        path: list[Import] = []
        stack: list[tuple[str, Iterator[str]]] = [(start, iter(graph[start]))]
        state[start] = 1
        while stack:
            module, children = stack[-1]
            child = next(children, None)
            if child is None:
                state[module] = 2
                stack.pop()
                if path:
                    path.pop()
                continue
            arrow = graph[module][child]
            if state.get(child) == 1:
                cycle_start = next(i for i, (m, _) in enumerate(stack) if m == child)
                return [*path[cycle_start:], arrow]
            if child not in state:
                state[child] = 1
                path.append(arrow)
                stack.append((child, iter(graph[child])))
    return None


def test_no_import_cycle_at_import_time() -> None:
    cycle = find_cycle(import_time_graph())
    assert cycle is None, "import cycle:\n" + "\n".join(str(arrow) for arrow in cycle or [])


@pytest.mark.parametrize(
    ("graph", "expected"),
    [
        ({"a": ["b"], "b": ["c"], "c": []}, None),
        ({"a": ["b"], "b": ["c"], "c": ["a"]}, ["a", "b", "c"]),
        ({"x": ["a"], "a": ["b"], "b": ["a"]}, ["a", "b"]),
    ],
)
def test_find_cycle(graph: dict[str, list[str]], expected: list[str] | None) -> None:
    arrows = {
        module: {target: Import("f.py", 1, module, target, (), True) for target in targets}
        for module, targets in graph.items()
    }
    cycle = find_cycle(arrows)
    assert (None if cycle is None else [arrow.importer for arrow in cycle]) == expected
