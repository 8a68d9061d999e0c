"""`spane worker --metrics-port P`: Prometheus metrics of all the worker's processes, scraped
from a real supervisor and its children during a real run."""

from __future__ import annotations

import os
import signal
import socket
import struct
import urllib.error
import urllib.request
from pathlib import Path

from cluster_support import FAST_RECOVERY, Cluster, flow, poll

# Every sample of a scrape by (name, labels).
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _scrape(port: int) -> Samples | None:
    """Every sample by (name, labels); None while nothing answers on the port."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
    except (urllib.error.URLError, ConnectionError):
        return None
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _value(samples: Samples | None, name: str, **labels: str) -> float:
    if samples is None:
        return -1.0
    return samples.get((name, frozenset(labels.items())), 0.0)


def _metrics_directories() -> set[str]:
    return {p.name for p in Path(os.environ.get("TMPDIR", "/tmp")).glob("spane-metrics-*")}


def test_scraped_during_a_run_the_counters_follow_the_nodes(cluster: Cluster) -> None:
    port = _free_port()
    hold = cluster.gate("hold")
    execution_id = cluster.submit(
        flow(
            "metered",
            "  first: {type: shell, config: {run: 'echo hi'}}\n"
            "  flaky:\n    type: fail\n    needs: [first]\n    config: {message: no luck}\n"
            "    retry: {attempts: 2}\n"
            f"  slow: {{type: shell, needs: [first], config: {{run: '{hold.wait}'}}}}\n",
        )
    )
    before = _metrics_directories()
    worker = cluster.start_worker(
        "--concurrency", "2", "--metrics-port", str(port), env=FAST_RECOVERY
    )
    finished = "spane_nodes_finished_total"

    def during_the_run() -> Samples | None:
        samples = _scrape(port)
        flaky_done = _value(samples, finished, workflow="metered", type="fail", status="failed")
        return samples if flaky_done == 1 else None

    samples = poll(during_the_run, 40, "the failed node counted while slow runs")
    assert cluster.node_status(execution_id, "slow") == "running"
    assert _value(samples, finished, workflow="metered", type="shell", status="succeeded") == 1
    assert _value(samples, "spane_node_retries_total", workflow="metered", type="fail") == 1
    assert _value(samples, "spane_dead_letters_total", workflow="metered") == 1
    # Read from Redis at the scrape: slow may still have been waiting for the idle child.
    assert ("spane_queue_depth", frozenset({("queue", "default")})) in samples
    latency = _value(samples, "spane_dispatch_latency_seconds_count", queue="default")
    assert latency >= 3  # first, flaky twice (and slow, unless a completion handed it over)
    duration = "spane_node_duration_seconds_count"
    assert _value(samples, duration, workflow="metered", type="fail", outcome="failed") == 2
    created = _metrics_directories() - before
    assert len(created) == 1  # one private directory for the supervisor and its children

    # The child running `slow` dies: its supervisor gives the node back at once.
    (owner,) = cluster.query(
        "SELECT h.pid FROM node_run n JOIN worker_heartbeat h ON h.name = n.worker"
        " WHERE n.execution_id = %s AND n.node_id = 'slow'",
        (execution_id,),
    )
    os.kill(owner[0], signal.SIGKILL)
    hold.open()
    poll(lambda: cluster.status(execution_id) == "failed", 45, "the run to end")

    def after_the_run() -> Samples | None:
        samples = _scrape(port)
        slow_done = _value(samples, finished, workflow="metered", type="shell", status="succeeded")
        return samples if slow_done == 2 else None

    samples = poll(after_the_run, 20, "slow counted once, after its rerun")
    assert _value(samples, "spane_lost_workers_total") == 1
    assert _value(samples, "spane_nodes_lost_total", workflow="metered") == 1
    # Counters of the dead child are kept: nothing went backwards.
    assert _value(samples, finished, workflow="metered", type="fail", status="failed") == 1
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0
    assert not (_metrics_directories() & created)  # removed with the worker


def test_a_single_worker_serves_and_the_reconciler_counts_its_actions(cluster: Cluster) -> None:
    port = _free_port()
    execution_id = cluster.submit(
        flow(
            "waits",
            "  pause: {type: delay, config: {duration: 1s}}\n"
            "  after: {type: noop, needs: [pause]}\n",
        )
    )
    worker = cluster.start_worker("--metrics-port", str(port), env=FAST_RECOVERY)
    poll(lambda: cluster.status(execution_id) == "succeeded", 30, "the delayed run")
    samples = poll(
        lambda: (
            (s := _scrape(port)) is not None
            and _value(s, "spane_reconciler_actions_total", action="woken") >= 1
            and s
        ),
        20,
        "the woken delay counted",
    )
    finished = _value(
        samples, "spane_nodes_finished_total", workflow="waits", type="noop", status="succeeded"
    )
    assert finished == 1
    for _ in range(5):  # scrapers that hang up at once (RST): no traceback in the log
        with socket.create_connection(("127.0.0.1", port)) as hangup:
            hangup.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            hangup.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
    assert _scrape(port) is not None
    busy = cluster.start_worker("--metrics-port", str(port))
    assert busy.wait(timeout=30) == 2  # the port is taken: one usage error, no traceback
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0
