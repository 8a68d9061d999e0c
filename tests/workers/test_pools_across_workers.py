"""Pools and mutexes across real `spane worker` processes on PostgreSQL, measured from the
nodes' own start and end times (each writes `date +%s.%N` to a shared file)."""

from __future__ import annotations

import itertools
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

from cluster_support import FAST_RECOVERY, Cluster, Gate, poll


def timed_flow(name: str, log: Path, count: int, control: str, hold: Gate | None = None) -> str:
    """`count` shell nodes under `control` (e.g. `pool: warehouse`), each logging its start
    and end; with `hold`, the first node runs until the gate opens."""
    nodes = []
    for index in range(count):
        wait = hold.wait if hold is not None and index == 0 else "sleep 0.3"
        run = (
            f"echo start $(date +%s.%N) {name}.n{index} >> {log}; {wait};"
            f" echo end $(date +%s.%N) {name}.n{index} >> {log}"
        )
        nodes.append(f"  n{index}:\n    type: shell\n    {control}\n    config: {{run: '{run}'}}\n")
    return f"version: 1\nname: {name}\nnodes:\n" + "".join(nodes)


def most_at_once(log: Path, cut_off_at: float | None = None) -> int:
    """The most runs open at one moment. A run without an end (its worker was killed) is taken
    as open until `cut_off_at`, the moment of the kill."""
    starts: dict[str, list[float]] = {}
    moments: list[tuple[float, int]] = []
    for line in log.read_text().splitlines():
        kind, at, run = line.split()
        if kind == "start":
            starts.setdefault(run, []).append(float(at))
            moments.append((float(at), 1))
        else:
            starts[run].pop()
            moments.append((float(at), -1))
    for unended in starts.values():
        for _ in unended:
            assert cut_off_at is not None, "a run that never ended"
            moments.append((cut_off_at, -1))
    open_now = peak = 0
    for _, change in sorted(moments, key=lambda m: (m[0], m[1])):  # ends before starts
        open_now += change
        peak = max(peak, open_now)
    return peak


def pool_view(cluster: Cluster, name: str) -> dict[str, Any]:
    result = cluster.spane("pool", "list", "-o", "json")
    assert result.returncode == 0, result.stderr
    return next(p for p in json.loads(result.stdout) if p["name"] == name)


def test_a_pool_of_two_shared_by_three_workflows_never_has_three_holders(
    cluster: Cluster,
) -> None:
    log = cluster.tmp_path / "runs.log"
    assert cluster.spane("pool", "set", "warehouse", "2").returncode == 0
    for _ in range(3):
        cluster.start_worker("--concurrency", "2")
    ids = [cluster.submit(timed_flow(f"load{i}", log, 4, "pool: warehouse")) for i in range(3)]
    # While the backlog drains, someone waits on the pool and says so.
    poll(lambda: pool_view(cluster, "warehouse")["waiters"], what="a waiter")
    poll(lambda: all(cluster.status(e) == "succeeded" for e in ids), 90, "all three to end")
    assert len(log.read_text().splitlines()) == 24  # every node ran once, start and end
    assert most_at_once(log) == 2
    view = pool_view(cluster, "warehouse")
    assert (view["size"], view["holders"], view["waiters"]) == (2, [], [])


def test_a_slot_held_by_a_killed_worker_comes_back_and_the_node_runs_again(
    cluster: Cluster,
) -> None:
    log = cluster.tmp_path / "runs.log"
    hold = cluster.gate("hold")
    assert cluster.spane("pool", "set", "warehouse", "2").returncode == 0
    workers = [cluster.start_worker("--concurrency", "2", env=FAST_RECOVERY) for _ in range(3)]
    held = cluster.submit(timed_flow("held", log, 1, "pool: warehouse", hold))
    poll(lambda: cluster.node_status(held, "n0") == "running", what="the holder to run")
    others = [cluster.submit(timed_flow(f"load{i}", log, 3, "pool: warehouse")) for i in range(2)]
    poll(lambda: pool_view(cluster, "warehouse")["waiters"], what="a waiter")
    ((holder,),) = cluster.query(
        "SELECT worker FROM node_run WHERE execution_id = %s AND node_id = 'n0'", (held,)
    )
    # Worker names carry the pid of their `spane worker` process.
    first = next(w for w in workers if f".{w.pid}-" in holder)
    os.killpg(first.pid, signal.SIGKILL)
    killed_at = time.time()
    first.wait(timeout=10)
    hold.open()
    every = [held, *others]
    poll(lambda: all(cluster.status(e) == "succeeded" for e in every), 90, "all to end")
    assert most_at_once(log, cut_off_at=killed_at) <= 2
    assert cluster.get(held)["nodes"]["n0"]["attempts"] == 1  # a lost worker uses no attempt
    assert any(e["type"] == "node.lost" for e in cluster.events(held))
    assert log.read_text().count("start") >= 8  # the held node ran again after the kill
    view = pool_view(cluster, "warehouse")
    assert (view["holders"], view["waiters"]) == ([], [])


def test_a_mutex_between_two_workflows_runs_one_node_at_a_time(cluster: Cluster) -> None:
    log = cluster.tmp_path / "runs.log"
    cluster.start_worker("--concurrency", "2")
    cluster.start_worker("--concurrency", "2")
    ids = [cluster.submit(timed_flow(f"deploy{i}", log, 3, "mutex: prod")) for i in range(2)]
    poll(lambda: all(cluster.status(e) == "succeeded" for e in ids), 90, "both to end")
    assert len(log.read_text().splitlines()) == 12
    assert most_at_once(log) == 1


def test_max_active_keeps_one_execution_open_and_starts_the_others_in_order(
    cluster: Cluster,
) -> None:
    log = cluster.tmp_path / "runs.log"
    for _ in range(2):
        cluster.start_worker("--concurrency", "2")
    workflow = timed_flow("nightly", log, 2, "queue: default").replace(
        "name: nightly\n", "name: nightly\nmax_active: 1\n"
    )
    ids = [cluster.submit(workflow) for _ in range(4)]
    poll(lambda: all(cluster.status(e) == "succeeded" for e in ids), 90, "all four to end")
    assert len(log.read_text().splitlines()) == 16
    executions = [cluster.get(e) for e in ids]
    spans = sorted((x["started_at"], x["finished_at"], x["id"]) for x in executions)
    for (_, finished, _), (started, _, _) in itertools.pairwise(spans):
        assert finished <= started  # never two open at once
    # The first claim may come from any of them; those that waited started oldest first.
    first = spans[0][2]
    assert [x[2] for x in spans[1:]] == [e for e in ids if e != first]


def test_foreach_items_take_one_slot_each(cluster: Cluster) -> None:
    log = cluster.tmp_path / "runs.log"
    run = (
        f"echo start $(date +%s.%N) items.{{{{ index }}}} >> {log}; sleep 0.3;"
        f" echo end $(date +%s.%N) items.{{{{ index }}}} >> {log}"
    )
    items = (
        "version: 1\nname: items\npools: {api: 2}\nnodes:\n"
        "  each:\n    type: shell\n    pool: api\n    foreach: [1, 2, 3, 4, 5, 6]\n"
        f"    config: {{run: '{run}'}}\n"
    )
    for _ in range(2):
        cluster.start_worker("--concurrency", "2")
    ids = [cluster.submit(items), cluster.submit(timed_flow("single", log, 2, "pool: api"))]
    poll(lambda: all(cluster.status(e) == "succeeded" for e in ids), 90, "both to end")
    assert len(log.read_text().splitlines()) == 16
    assert most_at_once(log) == 2
