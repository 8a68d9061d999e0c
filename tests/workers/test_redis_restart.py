"""A Redis server that dies and comes back empty: workers ride it out, nothing is lost.

Uses a private redis-server on a free port, so restarting it disturbs nobody else."""

from __future__ import annotations

import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cluster_support import Cluster, flow, fresh_postgres_url, poll

__all__ = ["fresh_postgres_url"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PrivateRedis:
    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.directory = directory
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--dir", str(self.directory),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip

        def answers() -> bool:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as conn:
                    conn.sendall(b"PING\r\n")
                    return conn.recv(16).startswith(b"+PONG")
            except OSError:
                return False

        poll(answers, 10, "redis-server to answer")

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.kill()


def test_a_redis_restart_mid_run_loses_nothing(
    fresh_postgres_url: str, private_redis: PrivateRedis, tmp_path: Path
) -> None:
    cluster = Cluster(fresh_postgres_url, private_redis.url, tmp_path)
    try:
        children = "".join(
            f"  c{i}: {{type: shell, needs: [first], config: {{run: 'sleep 0.3'}}}}\n"
            for i in range(4)
        )
        execution_id = cluster.submit(
            flow("restarted", "  first: {type: shell, config: {run: 'sleep 1.5'}}\n" + children)
        )
        cluster.start_worker()
        poll(lambda: cluster.node_status(execution_id, "first") == "running", what="first")
        private_redis.kill()
        private_redis.start()  # same port, empty: every queued job is gone
        poll(lambda: cluster.status(execution_id) == "succeeded", 60, "the execution to finish")
        statuses = cluster.node_statuses(execution_id)
        assert set(statuses.values()) == {"succeeded"}
    finally:
        cluster.stop_all()
    assert "Traceback" not in cluster.logs()
