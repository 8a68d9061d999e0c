"""Rate limits across real `spane worker` processes, measured from the nodes' own start times
(each shell node writes `date +%s.%N` to a shared file) and from their recorded starts."""

from __future__ import annotations

import bisect
import os
import signal
from pathlib import Path

import pytest
from cluster_support import FAST_RECOVERY, Cluster, poll

# Rates measured against the clock: run alone, after the rest of the suite (Makefile).
pytestmark = pytest.mark.timing


def limited_flow(name: str, log: Path, count: int, limits: str, label: bool = False) -> str:
    """`count` shell nodes, each writing its start time (and its id, with `label`) to `log`."""

    def run(index: int) -> str:
        return f"echo $(date +%s.%N){f' n{index}' if label else ''} >> {log}"

    nodes = "".join(
        f"  n{index}:\n    type: shell\n    config: {{run: '{run(index)}'}}\n"
        for index in range(count)
    )
    return f"version: 1\nname: {name}\n{limits}nodes:\n{nodes}"


def most_in_a_window(starts: list[float], window: float) -> int:
    """The most starts in any half-open window of `window` seconds."""
    times = sorted(starts)
    return max(bisect.bisect_left(times, t + window) - i for i, t in enumerate(times))


def test_fifty_nodes_under_five_a_second_start_at_that_rate_across_three_workers(
    cluster: Cluster,
) -> None:
    log = cluster.tmp_path / "starts.log"
    for _ in range(3):
        cluster.start_worker("--concurrency", "2")
    execution = cluster.submit(limited_flow("paced", log, 50, "rate_limits: {workflow: 5/s}\n"))
    # A node put off waits holding no worker, and says what for.
    poll(
        lambda: "rate limit workflow (5/s) until 20" in cluster.spane("get", execution).stdout,
        what="a node waiting for the rate limit",
    )
    poll(lambda: cluster.status(execution) == "succeeded", 60, "the execution to end")
    own = [float(line) for line in log.read_text().split()]
    assert len(own) == 50
    rows = cluster.query("SELECT started_at FROM node_run WHERE execution_id = %s", (execution,))
    recorded = [float(started) for (started,) in rows]
    for starts in (own, recorded):
        assert most_in_a_window(starts, 1.0) <= 5
        assert (len(starts) - 1) / (max(starts) - min(starts)) >= 4.0
    events = cluster.events(execution)
    deferred = [e for e in events if e["type"] == "node.deferred"]
    assert deferred and all(e["data"]["reason"] == "rate limit workflow (5/s)" for e in deferred)


def test_foreach_items_share_the_limit_of_their_node(cluster: Cluster) -> None:
    log = cluster.tmp_path / "items.log"
    for _ in range(2):
        cluster.start_worker("--concurrency", "2")
    run = f"echo $(date +%s.%N) >> {log}"
    workflow = (
        "version: 1\nname: paced-items\nnodes:\n"
        "  each:\n    type: shell\n    rate_limit: 4/s\n"
        f"    foreach: {list(range(12))}\n    config: {{run: '{run}'}}\n"
    )
    execution = cluster.submit(workflow)
    poll(lambda: cluster.status(execution) == "succeeded", 60, "the execution to end")
    starts = [float(line) for line in log.read_text().split()]
    assert len(starts) == 12
    assert most_in_a_window(starts, 1.0) <= 4
    assert max(starts) - min(starts) >= 2.0  # 12 at 4/s: three windows at least


def test_a_backlog_put_off_survives_a_kill_9_of_every_worker_and_keeps_its_rate(
    cluster: Cluster,
) -> None:
    log = cluster.tmp_path / "starts.log"
    workers = [cluster.start_worker("--concurrency", "2", env=FAST_RECOVERY) for _ in range(2)]
    limits = "rate_limits: {workflow: 2/s}\n"
    execution = cluster.submit(limited_flow("paced-crash", log, 16, limits, label=True))
    poll(lambda: log.exists() and len(log.read_text().split("\n")) > 4, what="some starts")
    for worker in workers:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)
    assert any(e["type"] == "node.deferred" for e in cluster.events(execution))
    for _ in range(2):
        cluster.start_worker("--concurrency", "2", env=FAST_RECOVERY)
    poll(lambda: cluster.status(execution) == "succeeded", 90, "the execution to end")
    lines = [line.split() for line in log.read_text().splitlines()]
    # Every node ran; one caught by the kill mid-run may have run twice, each time in a slot.
    assert {node for _, node in lines} == {f"n{index}" for index in range(16)}
    assert most_in_a_window([float(started) for started, _ in lines], 1.0) <= 2
