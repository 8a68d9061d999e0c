"""A short fault-injection run (scripts/fault_injection.py runs the long one): workflows whose
nodes log their side effects, while worker processes are killed, Redis is restarted and
flushed, and PostgreSQL is restarted fast and by a crash. Nothing may be lost or stuck, and
no node may be recorded as succeeded twice."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from spane_cli.faults.run import FAULT_KINDS, FaultPlan, FaultRun

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


def test_a_short_fault_run_loses_nothing(tmp_path: Path) -> None:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    lines: list[str] = []
    plan = FaultPlan(executions=12, fault_every_seconds=1.0, faults=FAULT_KINDS, seed=7)
    report = FaultRun(plan, tmp_path, lines.append).run().as_dict()
    log = "\n".join(lines)
    assert report["executions"] == 12, log
    assert report["stuck"] == 0 and report["lost"] == 0, (report, log)
    assert report["duplicate_completions"] == 0, report
    assert report["succeeded"] == 12, (report, log)
    assert sum(report["faults"].values()) >= 3, report
    assert report["unrecovered"] == {}, report
