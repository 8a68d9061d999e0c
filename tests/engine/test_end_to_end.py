"""Workflows from YAML to a finished execution, through RQ and real worker processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / "workflows"


def spane(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "spane_cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        cwd=ROOT,
    )


def run_local(*args: str) -> tuple[int, dict[str, Any], str]:
    result = spane("run", "--local", "-o", "json", *args)
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stdout.strip(), result.stderr
    final = json.loads(result.stdout)  # the one document: the execution as it ended
    return result.returncode, final, result.stderr


def test_dynamic_loop_doubles_each_item_and_aggregates() -> None:
    code, execution, _ = run_local(str(WORKFLOWS / "dynamic-loop.yaml"))
    assert code == 0
    assert execution["status"] == "succeeded"
    assert execution["nodes"]["double"]["output"] == [20, 40, 60, 80, 100]
    assert execution["nodes"]["double"]["items"] == {"total": 5, "done": 5}
    assert execution["output"] == {"aggregate": {"total": 300, "count": 5}}


@pytest.mark.parametrize(
    ("amount", "approver", "skipped"),
    [(1500, "manager", "auto_approve"), (50, "policy", "manager_review")],
)
def test_expense_approval_routes_by_amount_and_always_finalizes(
    amount: int, approver: str, skipped: str
) -> None:
    code, execution, _ = run_local(
        str(WORKFLOWS / "expense-approval.yaml"), "-i", f"amount={amount}"
    )
    assert code == 0, execution
    nodes = execution["nodes"]
    assert nodes[skipped]["status"] == "skipped"
    assert nodes["finalize"]["status"] == "succeeded"
    assert nodes["finalize"]["output"]["approved_by"] == approver


def test_etl_loads_into_both_targets() -> None:
    code, execution, _ = run_local(str(WORKFLOWS / "etl.yaml"))
    assert code == 0, execution
    assert execution["output"] == {"loaded": 4, "analytics": 4}
    assert "loading 4 rows" in execution["nodes"]["load-db"]["output"]["stdout"]


def test_subworkflow_maps_input_and_output() -> None:
    code, execution, _ = run_local(str(WORKFLOWS / "subworkflow.yaml"), "-i", "name=ada")
    assert code == 0, execution
    assert execution["nodes"]["child"]["output"] == {"message": "hello, Ada"}
    assert execution["output"] == {"message": "HELLO, ADA"}


def test_retry_succeeds_on_the_third_attempt() -> None:
    code, execution, _ = run_local(str(WORKFLOWS / "retry.yaml"))
    assert code == 0, execution
    assert execution["nodes"]["flaky"]["attempts"] == 3
    assert execution["nodes"]["report"]["output"] == {"said": "attempt 3"}


def test_delay_waits_then_finishes() -> None:
    code, execution, _ = run_local(str(WORKFLOWS / "delay.yaml"))
    assert code == 0, execution
    from spane_cli.timeutil import parse_iso

    started = parse_iso(execution["nodes"]["start"]["finished_at"])
    finished = parse_iso(execution["nodes"]["finish"]["started_at"])
    assert finished - started >= 2.0


def test_a_failing_workflow_exits_1_with_the_node_error(tmp_path: Path) -> None:
    flow = tmp_path / "fails.yaml"
    flow.write_text(
        "version: 1\nname: fails\nnodes:\n"
        "  boom: {type: shell, config: {run: 'echo bad >&2; exit 3'}}\n"
        "  after: {type: noop, needs: [boom]}\n"
    )
    code, execution, _stderr = run_local(str(flow))
    assert code == 1
    assert execution["status"] == "failed"
    assert execution["nodes"]["after"]["status"] == "upstream_failed"
    assert execution["error"].startswith("node 'boom' failed: exit code 3")


def test_secrets_are_resolved_on_the_worker_and_never_stored(tmp_path: Path) -> None:
    flow = tmp_path / "secret.yaml"
    flow.write_text(
        "version: 1\nname: secret\nnodes:\n"
        "  use: {type: shell, config: {run: 'echo token={{ secrets.TOKEN }}'}}\n"
    )
    db = tmp_path / "s.db"
    result = spane(
        "run",
        "--local",
        "-o",
        "json",
        "--db",
        f"sqlite:///{db}",
        str(flow),
        env={"SPANE_SECRET_TOKEN": "hunter2-very-secret"},
    )
    assert result.returncode == 0, result.stderr
    assert "token=***" in result.stdout
    assert b"hunter2-very-secret" not in db.read_bytes()
    for extra in tmp_path.glob("s.db-*"):
        assert b"hunter2-very-secret" not in extra.read_bytes()


def test_invalid_input_exits_2_before_anything_is_written() -> None:
    result = spane("run", "--local", str(WORKFLOWS / "expense-approval.yaml"))
    assert result.returncode == 2
    assert "missing required input 'amount'" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_real_worker_process_runs_a_submitted_execution(
    fresh_postgres_url: str, redis_url: str
) -> None:
    # A database of its own: --burst keeps going while any execution in it has work left.
    env = {"SPANE_DATABASE_URL": fresh_postgres_url, "SPANE_REDIS_URL": redis_url}
    submitted = spane("run", "-q", str(WORKFLOWS / "dynamic-loop.yaml"), env=env)
    assert submitted.returncode == 0, submitted.stderr
    execution_id = submitted.stdout.strip()
    worker = spane("worker", "--burst", env=env)
    assert worker.returncode == 0, worker.stderr
    assert "Traceback" not in worker.stderr
    got = spane("get", execution_id, "-o", "json", env=env)
    assert got.returncode == 0, got.stderr
    execution = json.loads(got.stdout)
    assert execution["status"] == "succeeded"
    assert execution["output"] == {"aggregate": {"total": 300, "count": 5}}
    listed = json.loads(spane("list", "--status", "succeeded", "-o", "json", env=env).stdout)
    assert execution_id in [e["id"] for e in listed]


def test_unknown_execution_exits_4(postgres_url: str) -> None:
    result = spane("get", "00000000-0000-0000-0000-000000000000", "--db", postgres_url)
    assert result.returncode == 4
    assert "no execution" in result.stderr


def test_unreachable_redis_exits_3_naming_it(tmp_path: Path) -> None:
    result = spane(
        "run",
        "--redis",
        "redis://127.0.0.1:1/0",
        "--db",
        f"sqlite:///{tmp_path}/x.db",
        str(WORKFLOWS / "delay.yaml"),
    )
    assert result.returncode == 3
    assert "Redis unreachable" in result.stderr
    assert "Traceback" not in result.stderr


def test_run_local_watch_prints_events_when_not_a_terminal() -> None:
    result = spane("run", "--local", "--watch", str(WORKFLOWS / "dynamic-loop.yaml"))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any("node.succeeded double" in line for line in lines)
    assert lines[-1].endswith("execution.succeeded")
