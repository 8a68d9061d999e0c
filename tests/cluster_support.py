"""Real services for tests: a fresh PostgreSQL database, a Redis db, worker process groups."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]


def poll(check: Callable[[], Any], deadline: float = 30.0, what: str = "condition") -> Any:
    """Wait until `check()` is truthy; fail with `what` after `deadline` seconds."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail(f"timed out after {deadline:.0f}s waiting for {what}")


@pytest.fixture
def fresh_postgres_url() -> Iterator[str]:
    """A database of this test's own, so workers see no other test's executions."""
    psycopg2 = pytest.importorskip("psycopg2")
    name = f"spane_w_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres")
    except psycopg2.OperationalError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is not reachable: {exc}")
        pytest.skip(f"PostgreSQL is not reachable: {exc}")
    admin.autocommit = True
    admin.cursor().execute(f"CREATE DATABASE {name}")
    yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    admin.cursor().execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    admin.close()


@pytest.fixture
def redis_db_url() -> Iterator[str]:
    redis = pytest.importorskip("redis")
    url = "redis://127.0.0.1:6379/14"
    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    except redis.ConnectionError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"Redis is not reachable: {exc}")
        pytest.skip(f"Redis is not reachable: {exc}")
    yield url
    client.flushdb()


class Cluster:
    """Environment and helpers for one test: CLI calls and worker process groups."""

    def __init__(self, db_url: str, redis_url: str, tmp_path: Path) -> None:
        self.env = {
            **os.environ,
            "SPANE_DATABASE_URL": db_url,
            "SPANE_REDIS_URL": redis_url,
            "PYTHONUNBUFFERED": "1",
        }
        self.db_url = db_url
        self.redis_url = redis_url
        self.tmp_path = tmp_path
        self.workers: list[tuple[subprocess.Popen[bytes], Path]] = []

    def spane(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "spane_cli", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env,
            cwd=ROOT,
        )

    def submit(self, workflow: str, *args: str) -> str:
        path = self.tmp_path / f"flow-{uuid.uuid4().hex[:8]}.yaml"
        path.write_text(workflow)
        result = self.spane("run", "-q", str(path), *args)
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    def start_worker(self, *args: str) -> subprocess.Popen[bytes]:
        log = self.tmp_path / f"worker-{len(self.workers)}.log"
        with open(log, "wb") as output:
            process = subprocess.Popen(
                [sys.executable, "-m", "spane_cli", "worker", *args],
                env=self.env,
                cwd=ROOT,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, so the test can kill all of it
            )
        self.workers.append((process, log))
        return process

    def get(self, execution_id: str) -> dict[str, Any]:
        result = self.spane("get", execution_id, "-o", "json")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def node_statuses(self, execution_id: str) -> dict[str, str]:
        """Read straight from the database: polling through the CLI is too slow for short nodes."""
        import psycopg2

        connection = psycopg2.connect(self.db_url)
        try:
            cursor = connection.cursor()
            cursor.execute(
                "SELECT node_id, status FROM node_run WHERE execution_id = %s", (execution_id,)
            )
            return {node_id: status for node_id, status in cursor.fetchall()}
        finally:
            connection.close()

    def node_status(self, execution_id: str, node_id: str) -> str:
        return self.node_statuses(execution_id).get(node_id, "")

    def status(self, execution_id: str) -> str:
        import psycopg2

        connection = psycopg2.connect(self.db_url)
        try:
            cursor = connection.cursor()
            cursor.execute("SELECT status FROM execution WHERE id = %s", (execution_id,))
            row = cursor.fetchone()
            return str(row[0]) if row else ""
        finally:
            connection.close()

    def events(self, execution_id: str) -> list[dict[str, Any]]:
        result = self.spane("events", execution_id, "-o", "json")
        return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]

    def stop_all(self) -> None:
        for process, _ in self.workers:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)

    def logs(self) -> str:
        return "\n".join(log.read_text(errors="replace") for _, log in self.workers if log.exists())


@pytest.fixture
def cluster(fresh_postgres_url: str, redis_db_url: str, tmp_path: Path) -> Iterator[Cluster]:
    current = Cluster(fresh_postgres_url, redis_db_url, tmp_path)
    yield current
    current.stop_all()
    logs = current.logs()
    print(logs)  # pytest shows it only when the test failed: what the workers were doing
    assert "Traceback" not in logs


def flow(name: str, nodes: str) -> str:
    return f"version: 1\nname: {name}\nnodes:\n{nodes}"
