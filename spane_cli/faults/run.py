"""One fault run: private servers, workers, a stream of submissions, faults injected while
they run, and the comparison of the side-effect log with the database at the end."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spane_cli.faults.servers import PrivatePostgres, PrivateRedis
from spane_cli.faults.workload import START_SUFFIX, side_effect_nodes, write_workflows

FAULT_KINDS = ("worker_kill", "redis_restart", "redis_flush", "postgres_fast", "postgres_crash")
# Progress must resume within this long after a fault, or the fault counts as not recovered.
RECOVERY_LIMIT_SECONDS = 60.0


@dataclass(frozen=True)
class FaultPlan:
    executions: int = 60
    workers: int = 2  # `spane worker` supervisors
    concurrency: int = 2  # processes under each
    faults: Sequence[str] = FAULT_KINDS
    fault_every_seconds: float = 2.0
    finish_within_seconds: float = 180.0
    seed: int = 1


@dataclass
class FaultReport:
    executions: int = 0
    succeeded: int = 0
    failed: int = 0
    stuck: int = 0  # not finished when the run gave up waiting
    lost: int = 0  # side effects of a succeeded execution that never ran
    duplicate_completions: int = 0  # a node recorded as succeeded more than once
    side_effects: int = 0  # side-effect nodes of the finished executions
    side_effect_reruns: int = 0  # runs beyond the first (at-least-once)
    # Starts of the long side-effect node beyond the first: kills that landed inside a run
    # (the rerun is expected; its side effect must still be recorded once).
    interrupted_runs: int = 0
    reruns_by_node: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    recovery_seconds: dict[str, list[float]] = field(default_factory=dict)
    unrecovered: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {
            "executions": self.executions,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "stuck": self.stuck,
            "lost": self.lost,
            "duplicate_completions": self.duplicate_completions,
            "side_effects": self.side_effects,
            "side_effect_reruns": self.side_effect_reruns,
            "rerun_rate": round(self.side_effect_reruns / self.side_effects, 4)
            if self.side_effects
            else 0.0,
            "interrupted_runs": self.interrupted_runs,
            "reruns_by_node": dict(self.reruns_by_node),
            "faults": dict(self.faults),
            "recovery_seconds_max": {
                kind: round(max(times), 2) for kind, times in self.recovery_seconds.items()
            },
            "unrecovered": dict(self.unrecovered),
        }


class _Database:
    """Plain psycopg2 reads of the run's database, reconnecting across server restarts."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.connection: Any = None

    def rows(self, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        import psycopg2

        for _ in range(100):
            try:
                if self.connection is None or self.connection.closed:
                    self.connection = psycopg2.connect(self.url, connect_timeout=2)
                    self.connection.autocommit = True
                with self.connection.cursor() as cursor:
                    cursor.execute(statement, tuple(params))
                    return list(cursor.fetchall())
            except psycopg2.Error:
                self.connection = None
                time.sleep(0.2)
        raise RuntimeError("the run's database stayed unreachable")


class FaultRun:
    def __init__(self, plan: FaultPlan, directory: Path, say: Callable[[str], None]) -> None:
        self.plan = plan
        self.directory = directory
        self.say = say
        self.random = random.Random(plan.seed)
        self.postgres = PrivatePostgres()
        self.redis = PrivateRedis(directory)
        self.side_effect_log = directory / "side-effects.log"
        self.workers: list[subprocess.Popen[bytes]] = []
        self.report = FaultReport()
        self.submitted: list[str] = []
        self._submitting_done = threading.Event()

    # -- the world ---------------------------------------------------------------------------

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "SPANE_DATABASE_URL": self.postgres.url,
            "SPANE_REDIS_URL": self.redis.url,
            "SPANE_HOME": str(self.directory / "home"),
            "PYTHONUNBUFFERED": "1",
        }

    def spane(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "spane_cli", *args],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=timeout,
        )

    def start(self) -> None:
        self.postgres.create()
        self.redis.start()
        migrated = self.spane("db", "migrate")
        if migrated.returncode != 0:
            raise RuntimeError(f"spane db migrate failed: {migrated.stderr.strip()}")
        for index in range(self.plan.workers):
            command = [sys.executable, "-m", "spane_cli", "worker"]
            command += ["--concurrency", str(self.plan.concurrency), "--name", f"fault-{index}"]
            # The child keeps its own copy of the file descriptor.
            with open(self.directory / f"worker-{index}.log", "wb") as log:
                self.workers.append(
                    subprocess.Popen(
                        command,
                        env=self.env,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )

    def stop(self) -> None:
        for worker in self.workers:
            if worker.poll() is None:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait()
        self.redis.kill()
        self.postgres.stop()

    # -- submissions -------------------------------------------------------------------------

    def submit_all(self, files: list[Path]) -> None:
        """`spane run` for every execution, spread over the run; a submission that meets a
        fault is tried again with the same idempotency key, so it never runs twice."""
        for number in range(self.plan.executions):
            path = files[number % len(files)]
            key = f"fault-{self.plan.seed}-{number}"
            deadline = time.monotonic() + RECOVERY_LIMIT_SECONDS
            while True:
                done = self.spane("run", "-q", "--idempotency-key", key, str(path))
                if done.returncode == 0 and done.stdout.strip():
                    self.submitted.append(done.stdout.strip().splitlines()[-1])
                    break
                if time.monotonic() > deadline:
                    self.say(f"submission {number} kept failing: {done.stderr.strip()[:200]}")
                    break
                time.sleep(0.2)
            time.sleep(0.05)
        self._submitting_done.set()

    # -- faults ------------------------------------------------------------------------------

    def _last_finish(self, database: _Database) -> float:
        row = database.rows("SELECT coalesce(max(finished_at), 0) FROM node_run")
        return float(row[0][0])

    def _progress_after(self, database: _Database, since: float) -> float | None:
        """Seconds from `since` until a node finished after it, or None if none did."""
        deadline = time.monotonic() + RECOVERY_LIMIT_SECONDS
        while time.monotonic() < deadline:
            if self._last_finish(database) > since:
                return time.time() - since
            if self._submitting_done.is_set() and self._all_finished(database):
                return None  # nothing left to make progress on
            time.sleep(0.1)
        return RECOVERY_LIMIT_SECONDS

    def _all_finished(self, database: _Database) -> bool:
        rows = database.rows(
            "SELECT count(*) FROM execution"
            " WHERE status NOT IN ('succeeded', 'failed', 'cancelled')"
        )
        return len(self.submitted) >= self.plan.executions and rows[0][0] == 0

    def _worker_children(self) -> list[int]:
        children: list[int] = []
        for worker in self.workers:
            listed = subprocess.run(
                ["pgrep", "-P", str(worker.pid)], capture_output=True, text=True
            )
            children += [int(pid) for pid in listed.stdout.split()]
        return children

    def _kill_a_worker(self, database: _Database) -> float | None:
        """kill -9 of one worker process; recovered once no node is left running on it."""
        children = self._worker_children()
        if not children:
            return None
        # A process in the middle of a node, when there is one: that is what must be recovered.
        busy = {
            int(pid)
            for (pid,) in database.rows(
                "SELECT DISTINCT h.pid FROM worker_heartbeat h"
                " JOIN node_run n ON n.worker = h.name AND n.status = 'running'"
            )
        }
        busy_children = [pid for pid in children if pid in busy]
        victim = self.random.choice(busy_children or children)
        names = database.rows("SELECT name FROM worker_heartbeat WHERE pid = %s", (victim,))
        try:
            os.kill(victim, signal.SIGKILL)
        except ProcessLookupError:  # it ended meanwhile (an adopted command, a child)
            return None
        killed_at = time.time()
        if not names:
            return None
        name = names[0][0]
        deadline = time.monotonic() + RECOVERY_LIMIT_SECONDS
        while time.monotonic() < deadline:
            running = database.rows(
                "SELECT count(*) FROM node_run n JOIN execution e ON e.id = n.execution_id"
                " WHERE n.worker = %s AND n.status = 'running' AND e.status = 'running'"
                " AND n.started_at < %s",
                (name, killed_at),
            )
            if running[0][0] == 0:
                return time.time() - killed_at
            time.sleep(0.1)
        return RECOVERY_LIMIT_SECONDS

    def inject(self, kind: str, database: _Database) -> float | None:
        if kind == "worker_kill":
            return self._kill_a_worker(database)
        if kind == "redis_restart":
            self.redis.restart()
        elif kind == "redis_flush":
            import redis

            redis.Redis.from_url(self.redis.url).flushall()
        elif kind == "postgres_fast":
            self.postgres.restart_fast()
        elif kind == "postgres_crash":
            self.postgres.crash_and_start()
        return self._progress_after(database, time.time())

    def inject_while_submitting(self) -> None:
        database = _Database(self.postgres.url)
        while not self._submitting_done.is_set():
            time.sleep(self.plan.fault_every_seconds)
            if self._submitting_done.is_set():
                break
            kind = self.random.choice(list(self.plan.faults))
            recovery = self.inject(kind, database)
            self.report.faults[kind] += 1
            if recovery is None:
                continue
            if recovery >= RECOVERY_LIMIT_SECONDS:
                self.report.unrecovered[kind] += 1
            self.report.recovery_seconds.setdefault(kind, []).append(recovery)
            self.say(f"{kind}: recovered in {recovery:.2f} s")

    # -- the verdict -------------------------------------------------------------------------

    def wait_and_compare(self) -> FaultReport:
        database = _Database(self.postgres.url)
        deadline = time.monotonic() + self.plan.finish_within_seconds
        while time.monotonic() < deadline and not self._all_finished(database):
            time.sleep(0.25)
        report = self.report
        report.executions = len(self.submitted)
        statuses = dict(database.rows("SELECT id, status FROM execution WHERE parent_id IS NULL"))
        workflows = dict(database.rows("SELECT id, workflow FROM execution"))
        report.succeeded = sum(s == "succeeded" for s in statuses.values())
        report.failed = sum(s == "failed" for s in statuses.values())
        report.stuck = sum(s not in ("succeeded", "failed", "cancelled") for s in statuses.values())
        completions = database.rows(
            "SELECT execution_id, node_id, count(*) FROM event WHERE type = 'node.succeeded'"
            " GROUP BY execution_id, node_id HAVING count(*) > 1"
        )
        report.duplicate_completions = sum(int(count) - 1 for _, _, count in completions)
        runs: Counter[tuple[str, str]] = Counter()
        if self.side_effect_log.exists():
            for line in self.side_effect_log.read_text().splitlines():
                parts = line.split()
                if len(parts) == 2:
                    runs[(parts[0], parts[1])] += 1
        for execution_id, status in statuses.items():
            if status != "succeeded":
                continue
            for node_id in side_effect_nodes(workflows[execution_id]):
                report.side_effects += 1
                count = runs.get((execution_id, node_id), 0)
                if count == 0:
                    report.lost += 1
                report.side_effect_reruns += max(0, count - 1)
                if count > 1:
                    report.reruns_by_node[node_id] += count - 1
                starts = runs.get((execution_id, node_id + START_SUFFIX), 0)
                report.interrupted_runs += max(0, starts - 1)
        return report

    def run(self) -> FaultReport:
        files = write_workflows(self.directory, self.side_effect_log)
        self.start()
        try:
            submitter = threading.Thread(target=self.submit_all, args=(files,), daemon=True)
            submitter.start()
            self.inject_while_submitting()
            submitter.join()
            return self.wait_and_compare()
        finally:
            self.stop()


def concurrent_submissions(directory: Path, count: int, say: Callable[[str], None]) -> Counter[int]:
    """`count` `spane run` at once against two workers on a private PostgreSQL with its
    default max_connections; the exit codes they gave."""
    directory.mkdir(parents=True, exist_ok=True)
    run = FaultRun(FaultPlan(executions=0, workers=1), directory, say)
    files = write_workflows(directory, run.side_effect_log)
    run.start()
    try:
        started = [
            subprocess.Popen(
                [sys.executable, "-m", "spane_cli", "run", "-q", str(files[index % len(files)])],
                env=run.env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            for index in range(count)
        ]
        codes: Counter[int] = Counter()
        for process in started:
            _, stderr = process.communicate(timeout=300)
            codes[process.returncode] += 1
            if process.returncode and codes[process.returncode] == 1:
                say(f"exit {process.returncode}: {stderr.decode().strip()[:200]}")
        return codes
    finally:
        run.stop()
