"""Worker timings: production's by default, shorter from SPANE_* variables, checked up front."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from cluster_support import ROOT

from spane_cli.engine import worker_settings
from spane_cli.errors import UsageError
from spane_cli.store import workers


def test_the_defaults_are_production_timings() -> None:
    timings = worker_settings.WorkerTimings.from_environment({})
    assert timings.heartbeat_every == workers.HEARTBEAT_EVERY_SECONDS
    assert timings.heartbeat_ttl == workers.HEARTBEAT_TTL_SECONDS
    assert timings.reconcile_every == worker_settings.RECONCILE_EVERY_SECONDS
    assert timings.cancel_check_every == worker_settings.CANCEL_CHECK_EVERY_SECONDS


def test_the_environment_shortens_them() -> None:
    timings = worker_settings.WorkerTimings.from_environment(
        {
            "SPANE_HEARTBEAT_TTL": "2",
            "SPANE_HEARTBEAT_EVERY": " 0.4 ",
            "SPANE_RECONCILE_EVERY": "0.25",
            "SPANE_CANCEL_CHECK_EVERY": "",  # empty: the default
        }
    )
    assert timings == worker_settings.WorkerTimings(
        heartbeat_every=0.4, heartbeat_ttl=2.0, reconcile_every=0.25
    )


@pytest.mark.parametrize(
    ("environment", "message"),
    [
        ({"SPANE_HEARTBEAT_TTL": "6s"}, "SPANE_HEARTBEAT_TTL must be a number of seconds"),
        ({"SPANE_RECONCILE_EVERY": "0"}, "SPANE_RECONCILE_EVERY must be a finite number"),
        ({"SPANE_CANCEL_CHECK_EVERY": "nan"}, "SPANE_CANCEL_CHECK_EVERY must be a finite"),
        ({"SPANE_HEARTBEAT_TTL": "inf"}, "SPANE_HEARTBEAT_TTL must be a finite number"),
        ({"SPANE_HEARTBEAT_TTL": "1"}, "SPANE_HEARTBEAT_EVERY (1.5) must be less than"),
    ],
)
def test_bad_values_are_usage_errors(environment: dict[str, str], message: str) -> None:
    with pytest.raises(UsageError, match=re.escape(message)):
        worker_settings.WorkerTimings.from_environment(environment)


def test_spane_worker_refuses_them_before_starting_children(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "spane_cli", "worker", "--concurrency", "2"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={
            **os.environ,
            "SPANE_DATABASE_URL": f"sqlite:///{tmp_path / 'spane.db'}",
            "SPANE_HEARTBEAT_TTL": "1",
        },
    )
    assert result.returncode == 2, result.stderr
    assert "SPANE_HEARTBEAT_EVERY (1.5) must be less than SPANE_HEARTBEAT_TTL (1)" in result.stderr
