"""A worker is one process life: a supervised child that dies is a new worker when it is
replaced, and its supervisor hands its node back at once instead of after a heartbeat TTL."""

from __future__ import annotations

import os
import re
import signal
import time

from cluster_support import Cluster, PrivateRedis, flow, poll

LONG_TTL = 60


def running_on(cluster: Cluster, execution_id: str, node_id: str) -> str | None:
    rows = cluster.query(
        "SELECT worker FROM node_run WHERE execution_id = %s AND node_id = %s"
        " AND status = 'running'",
        (execution_id, node_id),
    )
    return str(rows[0][0]) if rows and rows[0][0] else None


def test_a_killed_child_is_released_at_once_and_its_successor_is_a_new_worker(
    cluster: Cluster,
) -> None:
    hold = cluster.gate("hold")  # every run of `slow` holds until the test is done looking
    execution_id = cluster.submit(
        flow(
            "identity",
            f"  slow: {{type: shell, config: {{run: '{hold.wait}'}}}}\n"
            "  after: {type: noop, needs: [slow]}\n",
        )
    )
    # A heartbeat TTL of a minute: a takeover within half of it can only be the supervisor's
    # release (a deadline in seconds would measure the machine's load as well).
    slow_ttl = {"SPANE_HEARTBEAT_TTL": str(LONG_TTL), "SPANE_HEARTBEAT_EVERY": "2"}
    cluster.start_worker("--concurrency", "2", "--name", "sup", env=slow_ttl)
    first = poll(lambda: running_on(cluster, execution_id, "slow"), what="slow to start")
    assert first.startswith("sup-") and "~" in first  # name-index~life
    pid = cluster.query("SELECT pid FROM worker_heartbeat WHERE name = %s", (first,))[0][0]
    os.kill(int(pid), signal.SIGKILL)
    killed_at = time.monotonic()

    def taken_over() -> str | None:
        worker = running_on(cluster, execution_id, "slow")
        return worker if worker and worker != first else None

    second = poll(taken_over, deadline=LONG_TTL / 2, what="the node to run again")
    assert time.monotonic() - killed_at < LONG_TTL / 2, "released by the TTL, not at once"
    beating = "SELECT name FROM worker_heartbeat WHERE name = %s"
    assert cluster.query(beating, (first,)) == []  # that life's row went with it
    hold.open()
    poll(lambda: cluster.status(execution_id) == "succeeded", 30, "the execution to end")
    assert second != first
    attempts = cluster.query(
        "SELECT attempt, lost_count FROM node_run WHERE execution_id = %s AND node_id = 'slow'",
        (execution_id,),
    )
    assert attempts == [(1, 0)]  # no attempt used; the success clears the loss count
    lost = [e for e in cluster.events(execution_id) if e["type"] == "node.lost"]
    assert lost and lost[0]["data"]["worker"] == first


def test_a_child_that_keeps_failing_at_start_is_restarted_with_a_growing_delay(
    cluster: Cluster, private_redis: PrivateRedis
) -> None:
    import psutil

    env = {"SPANE_REDIS_URL": private_redis.url()}
    supervisor = cluster.start_worker("--concurrency", "2", "--name", "crashy", env=env)

    def children() -> list[psutil.Process]:
        return [c for c in psutil.Process(supervisor.pid).children() if c.status() != "zombie"]

    first = poll(lambda: len(children()) == 2 and children()[0], what="two children")
    private_redis.kill()  # from now on a new child exits 3 at its start
    first.kill()
    log = cluster.tmp_path / "worker-0.log"

    def delays() -> list[str]:
        return re.findall(
            r"crashy-0 exited with -?\d+; starting a new one in (\d+) s", log.read_text()
        )

    # A kill is restarted at once; each failure at start then waits longer than the last.
    poll(lambda: len(delays()) >= 4, 30, "three failed restarts")
    assert delays()[:4] == ["0", "0", "1", "2"], delays()
    private_redis.start()
    poll(lambda: len(cluster.live_workers()) == 2, 30, "the child to come back with Redis")
