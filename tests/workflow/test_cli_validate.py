"""`spane validate FILE...` as scripts and people use it: output forms and exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from helpers import run_spane

REPO = Path(__file__).resolve().parents[2]
ETL = str(REPO / "workflows" / "etl.yaml")
APPROVAL = str(REPO / "workflows" / "expense-approval.yaml")
KEYS = {"file", "line", "column", "path", "message"}


@pytest.fixture
def bad(tmp_path: Path) -> str:
    """Two independent problems: an unknown type on line 5 and an unknown parent on line 8."""
    path = tmp_path / "bad.yaml"
    path.write_text(
        "version: 1\nname: bad\nnodes:\n  a:\n    type: nope\n  b:\n    type: noop\n"
        "    needs: [zz]\n",
        encoding="utf-8",
    )
    return str(path)


def test_valid_files_print_ok_and_exit_0() -> None:
    result = run_spane("validate", ETL, APPROVAL)
    assert result.exit_code == 0
    assert result.stdout == f"{ETL}: ok\n{APPROVAL}: ok\n"
    assert result.stderr == ""


def test_quiet_prints_nothing_for_valid_files() -> None:
    for args in (("-q", "validate", ETL), ("validate", ETL, "--quiet")):
        result = run_spane(*args)
        assert (result.exit_code, result.stdout, result.stderr) == (0, "", "")


def test_both_problems_of_one_file_are_reported(bad: str) -> None:
    result = run_spane("validate", bad)
    assert result.exit_code == 2
    rows = result.stdout.splitlines()
    assert len(rows) == 2
    assert rows[0].startswith(f"{bad}:5:") and "unknown node type 'nope'" in rows[0]
    assert rows[1].startswith(f"{bad}:8:") and "needs unknown node 'zz'" in rows[1]


def test_several_files_ok_and_bad(bad: str) -> None:
    result = run_spane("validate", ETL, bad, APPROVAL)
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    rows = result.stdout.splitlines()
    assert f"{ETL}: ok" in rows and f"{APPROVAL}: ok" in rows
    assert sum(row.startswith(f"{bad}:") for row in rows) == 2


@pytest.mark.parametrize(
    "args",
    [
        ("-o", "json", "validate", "{bad}", "{etl}"),
        ("validate", "{bad}", "{etl}", "-o", "json"),
        ("validate", "-o", "json", "{bad}", "{etl}"),
        ("--output=json", "validate", "{bad}", "{etl}"),
        ("validate", "{bad}", "{etl}", "--output", "json"),
    ],
    ids=["before", "after", "between", "long-inline", "long-after"],
)
def test_json_output_wherever_the_option_is(bad: str, args: tuple[str, ...]) -> None:
    result = run_spane(*(a.format(bad=bad, etl=ETL) for a in args))
    assert result.exit_code == 2
    problems = json.loads(result.stdout)  # nothing but the JSON list on stdout
    assert isinstance(problems, list) and len(problems) == 2
    for problem in problems:
        assert set(problem) == KEYS
        assert problem["file"] == bad
    assert [(p["line"], p["path"]) for p in problems] == [
        (5, "nodes.a.type"),
        (8, "nodes.b.needs[0]"),
    ]
    assert "unknown node type 'nope'" in problems[0]["message"]
    assert isinstance(problems[0]["column"], int)


def test_json_output_of_valid_files_is_an_empty_list() -> None:
    result = run_spane("validate", ETL, APPROVAL, "-o", "json")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == []


def test_yaml_output(bad: str) -> None:
    result = run_spane("validate", bad, "-o", "yaml")
    assert result.exit_code == 2
    problems = yaml.safe_load(result.stdout)
    assert [p["line"] for p in problems] == [5, 8]
    assert set(problems[0]) == KEYS


def test_no_file_is_a_usage_error() -> None:
    result = run_spane("validate")
    assert result.exit_code == 2
    assert "Missing argument" in result.stderr
    assert "Traceback" not in result.output


def test_missing_file_in_json(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.yaml")
    result = run_spane("-o", "json", "validate", missing)
    assert result.exit_code == 2
    assert json.loads(result.stdout) == [
        {"file": missing, "line": 1, "column": 1, "path": "", "message": "no such file"}
    ]
