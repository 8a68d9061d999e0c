"""Schedules fired by real `spane worker` processes on PostgreSQL: several workers, one killed
with kill -9 and started again, Redis restarted; every fire time becomes exactly one
execution, none missing, none doubled."""

from __future__ import annotations

import itertools
import os
import signal
import time
from pathlib import Path

import pytest
from cluster_support import FAST_RECOVERY, Cluster, PrivateRedis, poll

from spane_cli.timeutil import parse_iso

SCHEDULED = """version: 1
name: ticking
schedule:
  name: {name}
  every: {every}
  overlap: {overlap}
nodes:
  stamp:
    type: {node}
"""


def scheduled_flow(tmp_path: Path, node: str, every: str = "1s", overlap: str = "allow") -> str:
    path = tmp_path / "ticking.yaml"
    path.write_text(SCHEDULED.format(name="ticking", every=every, overlap=overlap, node=node))
    return str(path)


def fired(cluster: Cluster) -> list[tuple[str, float, str]]:
    rows = cluster.query(
        "SELECT id, fire_time, status FROM execution WHERE schedule = 'ticking' ORDER BY fire_time"
    )
    return [(str(i), float(f), str(s)) for i, f, s in rows]


def test_every_fire_time_runs_once_across_workers_a_kill_9_and_a_redis_restart(
    fresh_postgres_url: str, private_redis: PrivateRedis, tmp_path: Path
) -> None:
    cluster = Cluster(fresh_postgres_url, private_redis.url(), tmp_path)
    try:
        node = (
            "transform\n    config: {output: {fire: '{{ schedule.fire_time }}', "
            "name: '{{ schedule.name }}'}}"
        )
        applied = cluster.spane("schedule", "apply", scheduled_flow(tmp_path, node))
        assert applied.returncode == 0, applied.stderr
        workers = [cluster.start_worker(env=FAST_RECOVERY) for _ in range(3)]
        poll(lambda: len(fired(cluster)) >= 3, 30, "the first fires")
        os.killpg(workers[0].pid, signal.SIGKILL)  # whichever it was doing
        workers[0].wait(timeout=10)
        count = len(fired(cluster))
        poll(lambda: len(fired(cluster)) >= count + 2, 20, "fires without the killed worker")
        cluster.start_worker(env=FAST_RECOVERY)
        private_redis.kill()
        count = len(fired(cluster))
        poll(lambda: len(fired(cluster)) >= count + 2, 20, "fires while Redis is down")
        private_redis.start()
        count = len(fired(cluster))
        poll(lambda: len(fired(cluster)) >= count + 3, 20, "fires after Redis is back")
        assert cluster.spane("schedule", "pause", "ticking").returncode == 0
        poll(
            lambda: all(status == "succeeded" for _, _, status in fired(cluster)),
            45,
            "every scheduled execution to succeed",
        )
        rows = fired(cluster)
        times = [fire_time for _, fire_time, _ in rows]
        first = times[0]
        assert times == [first + i for i in range(len(times))]  # none missing, none doubled
        assert len(times) >= 10
        for execution_id, fire_time, _ in rows[:3] + rows[-3:]:
            output = cluster.get(execution_id)["output"]["stamp"]
            assert output["name"] == "ticking"
            assert parse_iso(output["fire"]) == fire_time
        listed = cluster.spane("-o", "json", "list", "--schedule", "ticking", "--limit", "1000")
        assert listed.returncode == 0, listed.stderr
        assert listed.stdout.count('"fire_time"') == len(times)
        shown = cluster.spane("schedule", "get", "ticking", "--fires", "1000")
        assert shown.returncode == 0 and "ran" in shown.stdout
    finally:
        cluster.close()
        print(cluster.logs())
    assert "Traceback" not in cluster.logs()


def test_overlap_forbid_skips_fires_while_a_node_outlasts_the_interval(cluster: Cluster) -> None:
    gate = cluster.gate("slow")
    node = f"shell\n    config: {{run: '{gate.wait}'}}"
    path = scheduled_flow(cluster.tmp_path, node, every="1s", overlap="forbid")
    assert cluster.spane("schedule", "apply", path).returncode == 0
    cluster.start_worker("--concurrency", "2", env=FAST_RECOVERY)
    poll(lambda: len(fired(cluster)) == 1, 30, "the first fire")
    skipped = "SELECT count(*) FROM schedule_fire WHERE decision = 'skipped-overlap'"
    poll(lambda: cluster.query(skipped)[0][0] >= 3, 30, "fires skipped for the overlap")
    assert len(fired(cluster)) == 1  # the first execution is still running: nothing else ran
    gate.open()
    poll(lambda: len(fired(cluster)) >= 3, 30, "fires once the slow one ended")
    assert cluster.spane("schedule", "pause", "ticking").returncode == 0
    poll(lambda: all(s == "succeeded" for _, _, s in fired(cluster)), 30, "the executions")
    spans = cluster.query(
        "SELECT created_at, finished_at FROM execution WHERE schedule = 'ticking'"
        " ORDER BY created_at"
    )
    for (_, finished), (started, _) in itertools.pairwise(spans):
        assert started >= finished  # no two executions of the schedule were open at once
    view = cluster.spane("-o", "json", "schedule", "get", "ticking")
    assert '"skipped-overlap"' in view.stdout


def test_overlap_replace_cancels_the_running_execution(cluster: Cluster) -> None:
    gate = cluster.gate("never")
    node = f"shell\n    config: {{run: '{gate.wait}'}}"
    path = scheduled_flow(cluster.tmp_path, node, every="2s", overlap="replace")
    assert cluster.spane("schedule", "apply", path).returncode == 0
    cluster.start_worker("--concurrency", "2", env=FAST_RECOVERY)
    poll(lambda: len(fired(cluster)) >= 3, 40, "three fires")
    assert cluster.spane("schedule", "pause", "ticking").returncode == 0
    rows = fired(cluster)
    assert all(status == "cancelled" for _, _, status in rows[:-1])
    errors = cluster.query("SELECT error FROM execution WHERE status = 'cancelled'")
    assert all("replaced by the fire of" in str(error) for (error,) in errors)
    open_ones = [s for _, _, s in rows if s in ("pending", "running")]
    assert len(open_ones) <= 1


def test_workers_run_a_backfill_max_parallel_at_a_time(cluster: Cluster) -> None:
    node = "shell\n    config: {run: 'sleep 0.3'}"
    path = scheduled_flow(cluster.tmp_path, node, every="1h")
    assert cluster.spane("schedule", "add", "ticking", path, "--cron", "0 * * * *").returncode == 0
    # Paused, the schedule fires nothing of its own (an hour may begin during the test); its
    # backfill runs all the same.
    assert cluster.spane("schedule", "pause", "ticking").returncode == 0
    started = cluster.spane(
        "schedule", "backfill", "ticking", "--from", "2026-11-01T00:00:00Z",
        "--to", "2026-11-01T23:59:59Z", "--max-parallel", "3",
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    assert "24 fire times" in started.stdout
    cluster.start_worker("--concurrency", "3", env=FAST_RECOVERY)
    poll(
        lambda: len(fired(cluster)) == 24 and all(s == "succeeded" for _, _, s in fired(cluster)),
        90,
        "the backfill to finish",
    )
    first = parse_iso("2026-11-01T00:00:00Z")
    assert [t for _, t, _ in fired(cluster)] == [first + 3600 * i for i in range(24)]
    spans = cluster.query(
        "SELECT created_at, finished_at FROM execution WHERE schedule = 'ticking'"
    )
    moments = sorted({created for created, _ in spans})
    most_open = max(sum(1 for c, f in spans if c <= m < f) for m in moments)
    assert most_open <= 3
    finished = "SELECT count(*) FROM schedule_backfill WHERE finished_at IS NOT NULL"
    poll(lambda: cluster.query(finished)[0][0] == 1, 10, "the backfill to be marked finished")


@pytest.mark.parametrize("misfire", ["skip", "once"])
def test_fires_missed_while_every_worker_was_stopped(cluster: Cluster, misfire: str) -> None:
    path = scheduled_flow(cluster.tmp_path, "noop", every="1s")
    added = cluster.spane("schedule", "add", "ticking", path, "--every", "1s", "--misfire", misfire)
    assert added.returncode == 0, added.stderr
    worker = cluster.start_worker(env=FAST_RECOVERY)
    poll(lambda: len(fired(cluster)) >= 2, 30, "the first fires")
    worker.send_signal(signal.SIGTERM)  # a clean stop: its heartbeat row goes with it
    worker.wait(timeout=30)
    stopped_at = time.time()
    poll(lambda: time.time() > stopped_at + 4, 10, "four fire times with no worker")
    cluster.start_worker(env=FAST_RECOVERY)
    poll(lambda: cluster.live_workers() != [], 30, "the new worker")
    back_at = float(cluster.query("SELECT min(started_at) FROM worker_heartbeat")[0][0])
    poll(lambda: any(t > back_at + 1 for _, t, _ in fired(cluster)), 30, "fires after the restart")
    assert cluster.spane("schedule", "pause", "ticking").returncode == 0
    times = [t for _, t, _ in fired(cluster)]
    in_outage = [t for t in times if stopped_at < t < back_at]
    if misfire == "skip":
        assert in_outage == []
    else:
        assert in_outage == [max(t for t in times if t < back_at)]  # the latest, once
        assert len(in_outage) == 1
    after = [t for t in times if t > back_at]
    assert after == [after[0] + i for i in range(len(after))]  # on time again, every second
    missed = cluster.query(
        "SELECT detail FROM schedule_fire WHERE decision = 'missed' AND schedule = 'ticking'"
    )
    assert missed and f"misfire {misfire}" in str(missed[0][0])
