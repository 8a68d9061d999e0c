"""The spane side of the benchmark: real `spane worker` processes, timings from the database."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import peewee
import psutil

from spane_cli.engine.dispatch import Dispatcher
from spane_cli.engine.submit import submit
from spane_cli.engine.waiting import Pace, wait_for_end
from spane_cli.states import ExecutionStatus
from spane_cli.store import queries
from spane_cli.store.store import Store
from spane_cli.store.workers import live_workers

# Waiting for the end only; times come from the executions' timestamps.
END_PACE = Pace(first=0.1, longest=0.1)
STATS_FLUSH_SECONDS = 1.1  # PostgreSQL backends report their counters about once a second


@dataclass
class ScenarioResult:
    name: str
    nodes: int
    seconds: float
    transactions_per_node: float | None  # the nodes' own: background and bench polls removed
    transactions_per_node_total: float | None  # every commit in the database during the run
    latency_p50_ms: float
    latency_p99_ms: float
    failed: int = 0
    worker_rss_kib: list[int] = field(default_factory=list)  # right after the scenario
    # Sampled while it ran, at a quarter of its time: set against the end, it tells whether
    # memory grows with the nodes run (the model of a big workflow is there from the start).
    worker_rss_kib_quarter: list[int] = field(default_factory=list)

    @property
    def nodes_per_second(self) -> float:
        return self.nodes / self.seconds if self.seconds > 0 else 0.0

    @property
    def ms_per_node(self) -> float:
        return self.seconds * 1000 / self.nodes if self.nodes else 0.0


def rss_kib(pid: int) -> int:
    try:
        return int(psutil.Process(pid).memory_info().rss // 1024)
    except psutil.Error:  # exited, or a zombie
        return 0


class WorkerPool:
    """W single `spane worker` processes on the bench queue, started and stopped here."""

    def __init__(self, count: int, db_url: str, redis_url: str, queue: str) -> None:
        self.count = count
        self.env = {**os.environ, "SPANE_DATABASE_URL": db_url, "SPANE_REDIS_URL": redis_url}
        self.queue = queue
        self.processes: list[subprocess.Popen[bytes]] = []
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the pool

    def start(self, timeout: float = 30.0) -> None:
        try:
            self._start(timeout)
        except BaseException:
            self.stop()  # never leave workers behind on the bench queue
            raise

    def _start(self, timeout: float) -> None:
        for index in range(self.count):
            command = [
                sys.executable, "-m", "spane_cli", "worker", "--queue", self.queue,
                "--name", f"bench-{os.getpid()}-{index}",
            ]  # fmt: skip
            self.processes.append(
                subprocess.Popen(command, env=self.env, stdout=self.log, stderr=self.log)
            )
        deadline = time.monotonic() + timeout
        prefix = f"bench-{os.getpid()}-"
        while time.monotonic() < deadline:
            if sum(1 for w in live_workers() if w.name.startswith(prefix)) >= self.count:
                return
            if any(p.poll() is not None for p in self.processes):
                break
            time.sleep(0.05)
        self.log.seek(0)
        raise RuntimeError("bench workers did not start: " + self.log.read().decode()[-800:])

    def rss(self) -> list[int]:
        return [rss_kib(p.pid) for p in self.processes]

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        self.log.close()


def _commits(database: peewee.Database) -> int | None:
    if not isinstance(database, peewee.PostgresqlDatabase):
        return None
    row = database.execute_sql(
        "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
    ).fetchone()
    return int(row[0]) if row else None


def background_commits_per_second(database: peewee.Database, seconds: float = 3.0) -> float:
    """Commits per second with the workers idle: heartbeats and reconciler ticks, which run
    whether or not there are nodes, and are taken out of the per-node count."""
    time.sleep(STATS_FLUSH_SECONDS)
    before, started = _commits(database), time.monotonic()
    time.sleep(seconds)
    after = _commits(database)
    if before is None or after is None:
        return 0.0
    return max(0.0, (after - before - 1) / (time.monotonic() - started))


def settle(database: peewee.Database) -> None:
    """Between scenarios: clear the dead rows the last one left, so each starts alike (else a
    later, bigger scenario pays for autovacuum working through an earlier one's updates)."""
    if isinstance(database, peewee.PostgresqlDatabase):
        for table in ("node_run", "execution", "outbox", "event"):
            database.execute_sql(f"VACUUM (ANALYZE) {table}")


def _latencies(execution_ids: list[str]) -> list[float]:
    """Milliseconds from queued to started of every node that started, ascending."""
    times = queries.queued_and_started_times(execution_ids)
    return sorted((started - queued) * 1000 for queued, started in times)


def run_scenario(
    store: Store,
    dispatcher: Dispatcher,
    name: str,
    workflow_text: str,
    executions: int = 1,
    timeout: float = 900.0,
    background_per_second: float = 0.0,
    sample_rss: Callable[[], list[int]] | None = None,
) -> ScenarioResult:
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as handle:
        handle.write(workflow_text)
        path = handle.name
    try:
        time.sleep(STATS_FLUSH_SECONDS)
        commits_before, counted_from = _commits(store.database), time.monotonic()
        own_commits = 1  # the read above
        ids: list[str] = []
        for _ in range(executions):
            execution_id, _, dispatches = submit(store, path, {})
            dispatcher.enqueue(dispatches)
            ids.append(execution_id)
        samples: list[tuple[float, list[int]]] = []

        def before_each_look() -> None:
            nonlocal own_commits
            if sample_rss is not None:
                samples.append((time.monotonic(), sample_rss()))
            own_commits += 1  # the look itself is one query, so one commit

        if not wait_for_end(ids, within=timeout, pace=END_PACE, on_poll=before_each_look):
            raise RuntimeError(f"{name}: did not finish within {timeout:.0f}s")
        time.sleep(STATS_FLUSH_SECONDS)
        commits_after, counted_for = _commits(store.database), time.monotonic() - counted_from
        rows = queries.executions(ids)
        seconds = max(float(r.finished_at or 0) for r in rows) - min(r.created_at for r in rows)
        node_count = queries.node_count(ids)
        failed = sum(1 for r in rows if r.status != ExecutionStatus.SUCCEEDED)
        latencies = _latencies(ids) or [0.0]
        per_node = total_per_node = None
        if commits_before is not None and commits_after is not None and node_count:
            # The submit's own commits stay in; they are few next to the nodes'.
            total = commits_after - commits_before
            nodes_own = total - own_commits - background_per_second * counted_for
            total_per_node = total / node_count
            per_node = max(0.0, nodes_own) / node_count
        quarter: list[int] = []
        if samples:
            first, last = samples[0][0], samples[-1][0]
            quarter = min(samples, key=lambda s: abs(s[0] - (first + (last - first) / 4)))[1]
        return ScenarioResult(
            worker_rss_kib_quarter=quarter,
            name=name,
            nodes=node_count,
            seconds=seconds,
            transactions_per_node=per_node,
            transactions_per_node_total=total_per_node,
            latency_p50_ms=statistics.median(latencies),
            latency_p99_ms=latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
            failed=failed,
        )
    finally:
        os.unlink(path)
