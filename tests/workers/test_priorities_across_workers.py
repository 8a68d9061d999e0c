"""Priorities with real `spane worker` processes, read from the nodes' own recorded start
times: a queued backlog is reordered, and a low-priority job is not starved by a stream of
high-priority work (its bound is docs/priorities.md's, with a short SPANE_PRIORITY_AGING)."""

from __future__ import annotations

import contextlib
import json

from cluster_support import Cluster, poll
from redis import Redis

QUEUE = "prio"


def one_shell_node(name: str, priority: int | None) -> str:
    line = f"priority: {priority}\n" if priority is not None else ""
    return (
        f"version: 1\nname: {name}\n{line}"
        f"nodes:\n  work:\n    type: shell\n    queue: {QUEUE}\n    config: {{run: 'true'}}\n"
    )


def started_at(cluster: Cluster, execution_id: str, node_id: str = "work") -> float:
    rows = cluster.query(
        "SELECT started_at FROM node_run WHERE execution_id = %s AND node_id = %s",
        (execution_id, node_id),
    )
    return float(rows[0][0])


def test_a_queued_backlog_runs_its_high_priority_work_first(cluster: Cluster) -> None:
    low = [cluster.submit(one_shell_node("backlog", None)) for _ in range(6)]
    high = [cluster.submit(one_shell_node("urgent", 10)) for _ in range(3)]
    # Nobody serves the queue yet: the high-priority jobs wait on a band of it that RQ sees.
    with contextlib.closing(Redis.from_url(cluster.redis_url)) as redis:
        assert f"rq:queue:{QUEUE}@p10".encode() in redis.smembers("rq:queues")
        assert redis.llen(f"rq:queue:{QUEUE}@p10") == 3
    cluster.start_worker("--queue", QUEUE, "--concurrency", "1")
    everything = low + high
    poll(lambda: all(cluster.status(e) == "succeeded" for e in everything), 60, "the backlog")
    order = sorted(everything, key=lambda e: started_at(cluster, e))
    assert set(order[:3]) == set(high), [("high" if e in high else "low") for e in order]
    # Within a priority, first come first served.
    assert order[3:] == low

    shown = cluster.get(high[0])["nodes"]["work"]
    assert shown["priority"] == 10
    assert "priority" not in cluster.get(low[0])["nodes"]["work"]
    wide = cluster.spane("get", high[0], "-o", "wide")
    assert wide.returncode == 0, wide.stderr
    assert "priority" in wide.stdout and " 10 " in wide.stdout


def test_a_low_priority_job_is_served_within_the_bound_while_high_work_keeps_coming(
    cluster: Cluster,
) -> None:
    aging, gap, items = 0.4, 5, 40
    # One item after the other, each queued when the one before ends: high-priority work
    # that keeps arriving for longer than the bound.
    stream = (
        f"version: 1\nname: stream\npriority: {gap}\nnodes:\n  each:\n    type: shell\n"
        f"    queue: {QUEUE}\n    foreach: {json.dumps(list(range(items)))}\n"
        "    max_parallel: 1\n    config: {run: 'sleep 0.1'}\n"
    )
    stream_id = cluster.submit(stream)
    cluster.start_worker(
        "--queue", QUEUE, "--concurrency", "1", env={"SPANE_PRIORITY_AGING": str(aging)}
    )

    def items_started() -> int:
        rows = cluster.query(
            "SELECT count(*) FROM node_item WHERE execution_id = %s AND started_at IS NOT NULL",
            (stream_id,),
        )
        return int(rows[0][0])

    poll(lambda: items_started() >= 3, 30, "the stream to flow")
    low_id = cluster.submit(one_shell_node("patient", None))
    poll(lambda: cluster.status(low_id) == "succeeded", 60, "the low-priority job")
    queued = float(
        cluster.query(
            "SELECT queued_at FROM node_run WHERE execution_id = %s AND node_id = 'work'",
            (low_id,),
        )[0][0]
    )
    waited = started_at(cluster, low_id) - queued
    # The rule: it goes before any job of priority `gap` queued more than gap x aging after
    # it. The slack is for the item running when its turn came and a slow shared machine.
    assert waited <= gap * aging + 2.0, waited
    later = cluster.query(
        "SELECT count(*) FROM node_item WHERE execution_id = %s AND started_at > %s",
        (stream_id, started_at(cluster, low_id)),
    )
    assert int(later[0][0]) > 0, "it only ran once the stream had ended"
    poll(lambda: cluster.status(stream_id) == "succeeded", 90, "the stream")


def test_health_counts_a_band_as_served_by_the_workers_of_its_queue(cluster: Cluster) -> None:
    gate = cluster.gate("busy")
    busy = cluster.submit(
        f"version: 1\nname: busy\nnodes:\n  hold:\n    type: shell\n    queue: {QUEUE}\n"
        f"    config: {{run: '{gate.wait}'}}\n"
    )
    cluster.start_worker("--queue", QUEUE, "--concurrency", "1")
    poll(lambda: cluster.query(
        "SELECT 1 FROM node_run WHERE execution_id = %s AND status = 'running'", (busy,)
    ), 30, "the worker to be busy")  # fmt: skip
    waiting = cluster.submit(one_shell_node("urgent", 5))
    report = json.loads(cluster.spane("health", "-o", "json").stdout)
    assert report["queues"][f"{QUEUE}@p5"] == 1
    assert not [p for p in report["problems"] if QUEUE in p], report["problems"]
    gate.open()
    poll(lambda: cluster.status(waiting) == "succeeded", 30, "the waiting job")
