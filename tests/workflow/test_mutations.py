"""Property: whatever happens to a valid workflow file, validation never crashes.

Each example takes a file from workflows/, breaks it in one random way (structurally or as
text) and checks that `validate_file` returns instead of raising and that `spane validate`
exits 0 or 2 with located problems and no traceback.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import run_spane
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spane_cli.workflow.graph_render import render_dot, render_mermaid, render_tree
from spane_cli.workflow.validate import validate_file

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted(p.relative_to(REPO / "workflows") for p in (REPO / "workflows").rglob("*.yaml"))

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)


def _paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [path] if path else []
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*path, index))
    return found


def _kind(value: Any) -> str:
    return (
        "number"
        if isinstance(value, int | float) and not isinstance(value, bool)
        else type(value).__name__
    )


def _structural(data: st.DataObject, text: str) -> bytes:
    tree = yaml.safe_load(text)
    path = data.draw(st.sampled_from(_paths(tree)), label="path")
    parent = tree
    for part in path[:-1]:
        parent = parent[part]
    if data.draw(st.booleans(), label="delete"):
        del parent[path[-1]]
    else:
        old = parent[path[-1]]
        parent[path[-1]] = data.draw(
            json_values.filter(lambda v: _kind(v) != _kind(old)), label="new value"
        )
    return yaml.safe_dump(tree, allow_unicode=True, sort_keys=False).encode("utf-8")


def _textual(data: st.DataObject, raw: bytes) -> bytes:
    lines = raw.splitlines(keepends=True)
    kind = data.draw(
        st.sampled_from(["insert-text", "insert-bytes", "duplicate", "indent", "truncate"]),
        label="mutation",
    )
    if kind == "insert-text":
        at = data.draw(st.integers(0, len(raw)), label="at")
        return raw[:at] + data.draw(st.text(max_size=12), label="text").encode("utf-8") + raw[at:]
    if kind == "insert-bytes":
        at = data.draw(st.integers(0, len(raw)), label="at")
        return raw[:at] + data.draw(st.binary(min_size=1, max_size=6), label="bytes") + raw[at:]
    if kind == "truncate":
        return raw[: data.draw(st.integers(0, len(raw)), label="length")]
    index = data.draw(st.integers(0, len(lines) - 1), label="line")
    if kind == "duplicate":
        return b"".join([*lines[: index + 1], lines[index], *lines[index + 1 :]])
    line = lines[index]
    body = line.lstrip(b" \t")
    indent = data.draw(
        st.sampled_from([b"", b" ", b"  ", b"      ", b"\t", b"  \t"]), label="indent"
    )
    other = data.draw(st.integers(0, len(lines) - 1), label="swap with")
    if other != index:  # swap the indentation of two lines
        other_line = lines[other]
        other_body = other_line.lstrip(b" \t")
        lines[other] = line[: len(line) - len(body)] + other_body
        lines[index] = other_line[: len(other_line) - len(other_body)] + body
    else:
        lines[index] = indent + body
    return b"".join(lines)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of workflows/, so that mutants sit next to the sub-workflows they reference."""
    target = tmp_path_factory.mktemp("mutants") / "workflows"
    shutil.copytree(REPO / "workflows", target)
    return target


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_mutated_workflows_never_crash_validation(workdir: Path, data: st.DataObject) -> None:
    source = data.draw(st.sampled_from(EXAMPLES), label="file")
    raw = (REPO / "workflows" / source).read_bytes()
    if data.draw(st.booleans(), label="structural"):
        mutant = _structural(data, raw.decode("utf-8"))
    else:
        mutant = _textual(data, raw)
    path = workdir / source.parent / f"mutant-{source.name}"
    path.write_bytes(mutant)
    file = str(path)

    result = validate_file(file, {})  # must return, never raise
    assert all(p.file and p.line >= 1 and p.column >= 1 and p.message for p in result.problems)
    if result.workflow is not None:
        assert result.ok
        for render in (render_tree, render_mermaid, render_dot):
            assert render(result.workflow)

    cli = run_spane("validate", file)
    assert "Traceback" not in cli.output
    assert "internal error" not in cli.output
    if result.ok:
        assert (cli.exit_code, cli.stdout) == (0, f"{file}: ok\n")
    else:
        assert cli.exit_code == 2, cli.output
        rows = cli.stdout.splitlines()
        assert rows and all(row.split(":", 1)[0].endswith(".yaml") for row in rows), rows
