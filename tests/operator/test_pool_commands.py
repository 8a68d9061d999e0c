"""`spane pool list|set|rm`: what an operator types, what a script reads, the exit codes."""

from __future__ import annotations

import json
from pathlib import Path

from helpers import run_spane


def test_set_list_and_rm_a_pool(sqlite_url: str) -> None:
    assert run_spane("--db", sqlite_url, "pool", "set", "warehouse", "4").exit_code == 0
    listed = run_spane("--db", sqlite_url, "pool", "list", "-o", "json")
    assert listed.exit_code == 0, listed.stderr
    assert json.loads(listed.stdout) == [
        {"name": "warehouse", "size": 4, "set_by": "cli", "holders": [], "waiters": []}
    ]
    table = run_spane("--db", sqlite_url, "pool", "list")
    assert "warehouse" in table.stdout and "cli" in table.stdout
    removed = run_spane("--db", sqlite_url, "pool", "rm", "warehouse")
    assert (removed.exit_code, removed.stdout) == (0, "pool warehouse removed\n")
    assert json.loads(run_spane("--db", sqlite_url, "pool", "list", "-o", "json").stdout) == []


def test_bad_names_sizes_and_unknown_pools_are_one_line_errors(sqlite_url: str) -> None:
    bad_name = run_spane("--db", sqlite_url, "pool", "set", "Ware House", "2")
    assert bad_name.exit_code == 2
    assert bad_name.stderr.startswith("spane: bad pool name 'Ware House'")
    assert len(bad_name.stderr.splitlines()) == 1
    assert run_spane("--db", sqlite_url, "pool", "set", "warehouse", "0").exit_code == 2
    unknown = run_spane("--db", sqlite_url, "pool", "rm", "nothing")
    assert (unknown.exit_code, unknown.stderr) == (4, "spane: no pool 'nothing'\n")
    # The pool of a workflow's max_active can be sized too.
    assert run_spane("--db", sqlite_url, "pool", "set", "workflow:nightly", "2").exit_code == 0


def test_validate_refuses_a_node_with_both_pool_and_mutex(tmp_path: Path) -> None:
    flow = tmp_path / "flow.yaml"
    flow.write_text(
        "version: 1\nname: both\nnodes:\n  a: {type: noop, pool: db, mutex: db}\n",
        encoding="utf-8",
    )
    result = run_spane("validate", str(flow))
    assert result.exit_code == 2
    assert "pool and mutex exclude each other" in result.output
