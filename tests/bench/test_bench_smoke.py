"""`spane bench` completes with tiny sizes and reports every ratio (timings are not asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from cluster_support import ROOT


def test_bench_runs_and_prints_the_ratios(fresh_postgres_url: str, redis_url: str) -> None:
    result = subprocess.run(
        [
            sys.executable, "-m", "spane_cli", "bench", "-o", "json",
            "--workers", "1", "--fanout", "10", "--chain", "5", "--fanin", "10",
            "--small", "3", "--no-scale", "--repeat", "2",
            "--db", fresh_postgres_url, "--redis", redis_url,
        ],
        capture_output=True, text=True, timeout=180, cwd=ROOT, env=os.environ.copy(),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert set(report["ratios"]) == {
        "fanout_vs_rq_jobs_per_second",
        "chain_ms_per_hop_vs_rq_depends_on",
        "fanin_time_vs_fanout_time",
    }
    assert all(value > 0 for value in report["ratios"].values())
    assert {s["failed_executions"] for s in report["scenarios"].values()} == {0}
    assert report["baseline"]["rq_drain"]["jobs"] == 10
    assert report["runs_per_measurement"] == 2
