"""`spane bench` completes with tiny sizes and reports every ratio (timings are not asserted)."""

from __future__ import annotations

import json

import pytest

from spane_cli.bench import measure
from spane_cli.cli.app import main


def test_bench_runs_and_prints_the_ratios(
    fresh_postgres_url: str,
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The bench waits for PostgreSQL's statistics to settle before and after each run, and
    # samples idle commits for seconds: 20 s of sleeping here, for figures nobody reads. Run
    # in this process, those waits can be shortened; the rest is the command as is.
    monkeypatch.setattr(measure, "STATS_FLUSH_SECONDS", 0.0)
    sample = measure.background_commits_per_second
    monkeypatch.setattr(
        measure, "background_commits_per_second", lambda database: sample(database, 0.2)
    )
    with pytest.raises(SystemExit) as exited:
        main(
            [
                "bench", "-o", "json",
                "--workers", "1", "--fanout", "10", "--chain", "5", "--fanin", "10",
                "--small", "3", "--no-scale", "--repeat", "2",
                "--db", fresh_postgres_url, "--redis", redis_url,
            ]
        )  # fmt: skip
    out, err = capsys.readouterr()
    assert exited.value.code == 0, err
    report = json.loads(out)
    assert set(report["ratios"]) == {
        "fanout_vs_rq_jobs_per_second",
        "chain_ms_per_hop_vs_rq_depends_on",
        "fanin_time_vs_fanout_time",
    }
    assert all(value > 0 for value in report["ratios"].values())
    assert {s["failed_executions"] for s in report["scenarios"].values()} == {0}
    assert report["baseline"]["rq_drain"]["jobs"] == 10
    assert report["runs_per_measurement"] == 2
