"""`spane graph FILE --format tree|mermaid|dot`: every node and every edge, or exit 2."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from helpers import run_spane

REPO = Path(__file__).resolve().parents[2]
ETL = str(REPO / "workflows" / "etl.yaml")
APPROVAL = str(REPO / "workflows" / "expense-approval.yaml")

EDGES = {
    ETL: [
        ("extract", "transform"),
        ("transform", "load-db"),
        ("transform", "load-analytics"),
    ],
    APPROVAL: [
        ("route", "manager_review"),
        ("route", "auto_approve"),
        ("manager_review", "finalize"),
        ("auto_approve", "finalize"),
    ],
}


def nodes_of(file: str) -> set[str]:
    return {n for edge in EDGES[file] for n in edge}


def graph(file: str, fmt: str | None = None) -> str:
    args = ["graph", file] + (["--format", fmt] if fmt else [])
    result = run_spane(*args)
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    return result.stdout


@pytest.mark.parametrize("file", [ETL, APPROVAL], ids=["etl", "approval"])
def test_dot_has_every_node_and_edge(file: str) -> None:
    out = graph(file, "dot")
    assert out.startswith("digraph ") and out.rstrip().endswith("}")
    declared = set(re.findall(r'^\s+"([^"]+)" \[label=', out, re.MULTILINE))
    assert declared == nodes_of(file)
    edges = re.findall(r'^\s+"([^"]+)" -> "([^"]+)"', out, re.MULTILINE)
    assert sorted(edges) == sorted(EDGES[file])


@pytest.mark.parametrize("file", [ETL, APPROVAL], ids=["etl", "approval"])
def test_mermaid_has_every_node_and_edge(file: str) -> None:
    out = graph(file, "mermaid")
    assert out.startswith("flowchart TD\n")
    ids = dict(
        (label, mermaid_id)
        for mermaid_id, label in re.findall(r'^\s+(\S+)[\[{]"([^<"]+)<br/>', out, re.MULTILINE)
    )
    assert set(ids) == nodes_of(file)
    assert len(set(ids.values())) == len(ids)
    edges = re.findall(r"^\s+(\S+) -\.?->? (\S+)$", out, re.MULTILINE)
    by_id = {v: k for k, v in ids.items()}
    assert sorted((by_id[a], by_id[b]) for a, b in edges) == sorted(EDGES[file])


def test_mermaid_branch_is_a_diamond_and_conditional_edges_are_dashed() -> None:
    out = graph(APPROVAL, "mermaid")
    assert re.search(r'^\s+\S+\{"route<br/>', out, re.MULTILINE)
    assert out.count("-.->") == 2  # both edges into finalize (trigger none_failed)


@pytest.mark.parametrize("file", [ETL, APPROVAL], ids=["etl", "approval"])
def test_tree_shows_every_node_under_its_parent(file: str) -> None:
    out = graph(file)  # tree is the default
    assert out == graph(file, "tree")
    rows = out.splitlines()
    assert rows[0] == Path(file).stem
    depth: dict[str, int] = {}
    for row in rows[1:]:
        match = re.search(r"[└├]── ([A-Za-z0-9_-]+)", row)
        assert match, row
        depth.setdefault(match.group(1), match.start())
    assert set(depth) == nodes_of(file)
    for parent, child in EDGES[file]:
        assert depth[child] > depth[parent]


def test_tree_marks_a_node_with_two_parents() -> None:
    out = graph(APPROVAL)
    assert "(needs manager_review, auto_approve)" in out
    assert "finalize ↑ (shown above)" in out
    assert "trigger=none_failed" in out


def test_mermaid_ids_stay_distinct(tmp_path: Path) -> None:
    file = tmp_path / "ids.yaml"
    file.write_text(
        "version: 1\nname: ids\nnodes:\n  a-b: {type: noop}\n  a_b: {type: noop, needs: [a-b]}\n"
    )
    out = graph(str(file), "mermaid")
    declared = re.findall(r'^\s+(\S+)\["(a[-_]b)<br/>', out, re.MULTILINE)
    assert len({mermaid_id for mermaid_id, _ in declared}) == 2


def test_graph_of_an_invalid_file_exits_2(tmp_path: Path) -> None:
    file = tmp_path / "bad.yaml"
    file.write_text("version: 1\nname: bad\nnodes:\n  a: {type: noop, needs: [b]}\n")
    result = run_spane("graph", str(file), "--format", "dot")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "Traceback" not in result.output
    rows = result.stderr.splitlines()
    assert rows == [f"{file}:4:27: node 'a' needs unknown node 'b'"]


def test_graph_of_a_missing_file_exits_2(tmp_path: Path) -> None:
    result = run_spane("graph", str(tmp_path / "none.yaml"))
    assert result.exit_code == 2
    assert "no such file" in result.stderr


def test_unknown_format_is_a_usage_error() -> None:
    result = run_spane("graph", ETL, "--format", "png")
    assert result.exit_code == 2
    assert "png" in result.stderr
    assert "Traceback" not in result.output
