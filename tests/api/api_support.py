"""A real `spane serve` process for the API tests, on a port the OS picked, with its log."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
from cluster_support import ROOT, poll

_LISTENING = re.compile(r"Uvicorn running on http://[^:]+:(\d+)")


class ApiServer:
    def __init__(self, db_url: str, redis_url: str, tmp_path: Path, *args: str) -> None:
        self.db_url = db_url
        self.redis_url = redis_url
        self.log_path = tmp_path / f"serve-{os.getpid()}-{id(self)}.log"
        self.env = {
            **os.environ,
            "SPANE_DATABASE_URL": db_url,
            "SPANE_REDIS_URL": redis_url,
            "PYTHONUNBUFFERED": "1",
        }
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "spane_cli", "serve", "--port", "0", *args],
                env=self.env,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        port = poll(self._port, deadline=60, what="the server listening")
        self.url = f"http://127.0.0.1:{port}"

    def _port(self) -> int | None:
        if self.process.poll() is not None:
            pytest.fail(f"spane serve exited {self.process.returncode}:\n{self.log()}")
        found = _LISTENING.search(self.log())
        return int(found.group(1)) if found else None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def client(self, token: str | None = None, **kwargs: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60, **kwargs)

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)


@contextlib.contextmanager
def serving(
    db_url: str, redis_url: str, tmp_path: Path, *args: str, env: Mapping[str, str] = {}
) -> Iterator[ApiServer]:
    server = ApiServer(db_url, redis_url, tmp_path, *args)
    try:
        yield server
    finally:
        server.stop()
    log = server.log()
    print(log)  # shown when the test failed
    assert "Traceback" not in log, log


def make_token(db_url: str, scope: str, name: str | None = None, **kwargs: Any) -> str:
    """A token straight from the store, as `spane token create` makes it."""
    import uuid

    from spane_cli.store import tokens
    from spane_cli.store.db import open_database
    from spane_cli.store.migrations import migrate

    database = open_database(db_url)
    try:
        migrate(database)
        return tokens.create(database, name or f"{scope}-{uuid.uuid4().hex[:8]}", scope, **kwargs)
    finally:
        database.close()
