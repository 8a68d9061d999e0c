"""Real `spane worker` processes on real Redis and PostgreSQL: crashes, outages, lifecycle."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Sequence

import pytest
from cluster_support import FAST_RECOVERY, ROOT, Cluster, flow, poll, spane_processes


def test_kill_9_of_the_worker_group_mid_node_loses_nothing(cluster: Cluster) -> None:
    killed = cluster.gate("killed")  # the first run holds until its worker is gone
    execution_id = cluster.submit(
        flow(
            "killed",
            f"  slow: {{type: shell, config: {{run: '{killed.wait}'}}}}\n"
            "  after: {type: noop, needs: [slow]}\n",
        )
    )
    first = cluster.start_worker("--concurrency", "2", env=FAST_RECOVERY)
    poll(lambda: cluster.node_status(execution_id, "slow") == "running", what="slow to run")
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(timeout=10)
    killed.open()
    cluster.start_worker("--concurrency", "2", env=FAST_RECOVERY)
    poll(lambda: cluster.status(execution_id) == "succeeded", 45, "recovery")
    execution = cluster.get(execution_id)
    assert execution["nodes"]["slow"]["attempts"] == 1  # a lost worker uses no attempt
    assert execution["nodes"]["after"]["status"] == "succeeded"
    assert any(e["type"] == "node.lost" for e in cluster.events(execution_id))


def test_redis_flushdb_mid_run_still_finishes(cluster: Cluster) -> None:
    import redis

    flushed = cluster.gate("flushed")  # children hold until their jobs have been flushed
    children = "".join(
        f"  c{i}: {{type: shell, needs: [start], config: {{run: '{flushed.wait}'}}}}\n"
        for i in range(6)
    )
    execution_id = cluster.submit(
        flow(
            "flushed",
            "  start: {type: noop}\n"
            + children
            + "  end: {type: noop, needs: ["
            + ", ".join(f"c{i}" for i in range(6))
            + "]}\n",
        )
    )
    cluster.start_worker()  # one process: one child runs, the jobs of the others wait in Redis
    poll(
        lambda: "running" in cluster.node_statuses(execution_id).values(),
        what="a child to run",
    )
    redis.Redis.from_url(cluster.redis_url).flushdb()
    flushed.open()
    poll(lambda: cluster.status(execution_id) == "succeeded", 45, "the execution to finish")
    assert all(n["attempts"] == 1 for n in cluster.get(execution_id)["nodes"].values())


def test_every_job_delivered_twice_runs_each_node_once(cluster: Cluster) -> None:
    import threading

    from redis import Redis

    from spane_cli.config import Settings
    from spane_cli.engine.connections import open_store
    from spane_cli.engine.dispatch import Dispatcher
    from spane_cli.engine.submit import submit
    from spane_cli.engine.worker import NodeWorker, WorkerOptions
    from spane_cli.store.records import Dispatch

    class TwiceDispatcher(Dispatcher):
        def enqueue(self, dispatches: Sequence[Dispatch], at_front: bool = False) -> None:
            super().enqueue(dispatches, at_front)
            super().enqueue(dispatches, at_front)

    nodes = (
        "  root: {type: noop}\n"
        + "".join(f"  n{i}: {{type: noop, needs: [root]}}\n" for i in range(20))
        + "  join: {type: noop, needs: ["
        + ", ".join(f"n{i}" for i in range(20))
        + "]}\n"
    )
    path = cluster.tmp_path / "twice.yaml"
    path.write_text(flow("twice", nodes))
    store = open_store(Settings(db_url=cluster.db_url, redis_url=cluster.redis_url))
    connection = Redis.from_url(cluster.redis_url)
    execution_id, _, dispatches = submit(store, str(path), {})
    TwiceDispatcher(connection).enqueue(dispatches)

    def work(index: int) -> None:
        worker = NodeWorker(
            store, Redis.from_url(cluster.redis_url), WorkerOptions(name=f"t{index}", burst=True)
        )
        worker.dispatcher = TwiceDispatcher(worker.connection)
        worker.run()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    store.close()
    execution = cluster.get(execution_id)
    assert execution["status"] == "succeeded"
    assert {n["attempts"] for n in execution["nodes"].values()} == {1}
    events = cluster.events(execution_id)
    started = [e["node_id"] for e in events if e["type"] == "node.started"]
    assert sorted(started) == sorted(execution["nodes"])
    finished = [e["node_id"] for e in events if e["type"] == "node.succeeded"]
    assert sorted(finished) == sorted(execution["nodes"])


def test_cancel_stops_the_running_node_and_wait_exits_5(cluster: Cluster) -> None:
    # A command line no other process has, to look for it after the cancel.
    command = f"sleep 600.{secrets.randbelow(10**9):09d}"
    workflow = flow(
        "cancelled",
        f"  long: {{type: shell, config: {{run: '{command}'}}}}\n"
        "  after: {type: noop, needs: [long]}\n",
    )
    path = cluster.tmp_path / "cancel.yaml"
    path.write_text(workflow)
    waiting = subprocess.Popen(
        [sys.executable, "-m", "spane_cli", "run", "--wait", str(path)],
        env=cluster.env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert waiting.stdout is not None
        execution_id = waiting.stdout.readline().strip()
        if not execution_id:
            waiting.kill()
            pytest.fail(f"run --wait printed no execution id: {waiting.communicate()[1]}")
        cluster.start_worker(env={"SPANE_CANCEL_CHECK_EVERY": "0.2"})
        poll(lambda: cluster.node_status(execution_id, "long") == "running", what="long to run")
        cancelled = cluster.spane("cancel", execution_id)
        assert cancelled.returncode == 0, cancelled.stderr
        _, waited_stderr = waiting.communicate(timeout=30)
    finally:
        if waiting.poll() is None:  # a failed step above must not leave the waiting CLI behind
            waiting.kill()
            waiting.communicate()
    assert waiting.returncode == 5, waited_stderr
    execution = cluster.get(execution_id)
    assert execution["status"] == "cancelled"
    assert execution["nodes"]["after"]["status"] == "cancelled"
    assert execution["nodes"]["after"]["started_at"] is None

    def sleeping() -> list[int]:
        found = subprocess.run(["pgrep", "-f", command], capture_output=True, text=True)
        return [int(pid) for pid in found.stdout.split()]

    try:
        poll(lambda: not sleeping(), 15, "the node's process group to be killed")
    finally:
        for pid in sleeping():  # not left behind for ten minutes when the test failed
            os.kill(pid, signal.SIGKILL)


def test_pause_holds_the_next_node_and_resume_finishes(cluster: Cluster) -> None:
    paused = cluster.gate("paused")  # first runs until the execution is paused
    execution_id = cluster.submit(
        flow(
            "paused",
            f"  first: {{type: shell, config: {{run: '{paused.wait}'}}}}\n"
            "  second: {type: noop, needs: [first]}\n",
        )
    )
    cluster.start_worker()
    poll(lambda: cluster.node_status(execution_id, "first") == "running", what="first to run")
    assert cluster.spane("pause", execution_id).returncode == 0
    paused.open()
    poll(lambda: cluster.node_status(execution_id, "first") == "succeeded", what="first to end")
    held_until = time.monotonic() + 2.0  # two reconciler ticks of an idle worker
    while time.monotonic() < held_until:  # a window in which the paused node must not start
        assert cluster.node_status(execution_id, "second") in ("pending", "queued")
        assert cluster.status(execution_id) == "paused"
        time.sleep(0.05)
    assert cluster.spane("resume", execution_id).returncode == 0
    poll(lambda: cluster.status(execution_id) == "succeeded", what="the end")
    types = [e["type"] for e in cluster.events(execution_id)]
    assert "execution.paused" in types and "execution.resumed" in types


def test_sigterm_finishes_the_running_node_then_exits_0(cluster: Cluster) -> None:
    termed = cluster.gate("termed")  # the node runs until the worker has had its SIGTERM
    execution_id = cluster.submit(
        flow("termed", f"  work: {{type: shell, config: {{run: '{termed.wait}'}}}}\n")
    )
    worker = cluster.start_worker()
    poll(lambda: cluster.node_status(execution_id, "work") == "running", what="work to run")
    worker.send_signal(signal.SIGTERM)
    held_until = time.monotonic() + 1.0  # a cancel check or two: the node must go on
    while time.monotonic() < held_until:
        assert worker.poll() is None
        assert cluster.node_status(execution_id, "work") == "running"
        time.sleep(0.05)
    termed.open()
    assert worker.wait(timeout=30) == 0
    assert cluster.node_status(execution_id, "work") == "succeeded"


def test_workers_reconnect_after_their_database_backends_are_killed(cluster: Cluster) -> None:
    import psycopg2

    killed = cluster.gate("killed")  # s1 runs until the backends are gone
    nodes = (
        "  s0: {type: shell, config: {run: 'true'}}\n"
        f"  s1: {{type: shell, needs: [s0], config: {{run: '{killed.wait}'}}}}\n"
        + "".join(
            f"  s{i}: {{type: shell, needs: [s{i - 1}], config: {{run: 'true'}}}}\n"
            for i in range(2, 5)
        )
    )
    execution_id = cluster.submit(flow("reconnect", nodes))
    cluster.start_worker("--concurrency", "2")
    poll(lambda: cluster.node_status(execution_id, "s1") == "running", what="s1 to run")
    database = cluster.db_url.rsplit("/", 1)[1]
    admin = psycopg2.connect(host="127.0.0.1", user="postgres", dbname="postgres")
    admin.autocommit = True
    admin.cursor().execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (database,)
    )
    admin.close()
    killed.open()
    poll(lambda: cluster.status(execution_id) == "succeeded", 60, "the end")


def test_the_same_idempotency_key_gives_one_execution(cluster: Cluster) -> None:
    path = cluster.tmp_path / "idem.yaml"
    path.write_text(flow("idem", "  a: {type: noop}\n"))
    runs = [("run", "-q", "--idempotency-key", "k1", str(path))] * 8
    results = spane_processes(runs, cluster.env, cluster.tmp_path, parallel=8)
    assert [r.stderr for r in results if r.returncode] == []
    assert len({r.stdout.strip() for r in results}) == 1


def test_200_concurrent_submits_all_succeed(cluster: Cluster) -> None:
    path = cluster.tmp_path / "many.yaml"
    path.write_text(flow("many", "  a: {type: noop}\n  b: {type: noop, needs: [a]}\n"))
    # On a fresh database: the first of them also race to create the schema.
    results = spane_processes([("run", "-q", str(path))] * 200, cluster.env, cluster.tmp_path)
    assert [r.stderr for r in results if r.returncode] == []
    assert len({r.stdout.strip() for r in results}) == 200
    cluster.start_worker("--concurrency", "2")
    poll(lambda: cluster.count("succeeded") == 200, 120, "all 200 executions to succeed")
    assert cluster.count("failed") == 0


def test_sigint_after_sigterm_stops_at_once_and_the_node_runs_again(cluster: Cluster) -> None:
    dropped = cluster.gate("dropped")  # the first run holds until its worker has stopped
    execution_id = cluster.submit(
        flow("twice-termed", f"  work: {{type: shell, config: {{run: '{dropped.wait}'}}}}\n")
    )
    worker = cluster.start_worker(env=FAST_RECOVERY)
    poll(lambda: cluster.node_status(execution_id, "work") == "running", what="work to run")
    worker.send_signal(signal.SIGTERM)
    worker.send_signal(signal.SIGINT)  # two SIGTERMs sent back to back may merge into one
    assert worker.wait(timeout=10) == 1  # a forced stop, told apart from a clean one
    assert cluster.node_status(execution_id, "work") == "running"  # dropped, not finished
    dropped.open()
    cluster.start_worker(env=FAST_RECOVERY)
    poll(lambda: cluster.status(execution_id) == "succeeded", 40, "the re-dispatched node")
    assert cluster.get(execution_id)["nodes"]["work"]["attempts"] == 1


def test_workers_of_a_killed_supervisor_stop_instead_of_living_on(cluster: Cluster) -> None:
    supervisor = cluster.start_worker("--concurrency", "2")

    def children() -> list[int]:
        found = subprocess.run(["pgrep", "-P", str(supervisor.pid)], capture_output=True, text=True)
        return [int(pid) for pid in found.stdout.split()]

    pids = poll(lambda: len(children()) == 2 and children(), what="two worker processes")
    os.kill(supervisor.pid, signal.SIGKILL)
    supervisor.wait(timeout=10)

    def all_gone() -> bool:
        return all(not os.path.exists(f"/proc/{pid}") or _zombie(pid) for pid in pids)

    poll(all_gone, 15, "the orphaned workers to stop")


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] == "Z"
    except OSError:
        return True
