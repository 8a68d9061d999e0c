"""`spane worker --concurrency N`: N single worker processes, replaced when one crashes.

Signal handlers only set flags; the loop acts on them. The first SIGTERM is passed on to the
children (each finishes its running node and exits); a second one, or SIGINT, kills them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable

from spane_cli.engine.worker_settings import LIFE_ENV, worker_identity
from spane_cli.processes import become_subreaper

log = logging.getLogger("spane.supervisor")

# Set in each child's environment: a child whose supervisor is gone (kill -9) stops by itself
# after its running node instead of living on as an orphan.
SUPERVISOR_ENV = "SPANE_SUPERVISOR_PID"
QUICK_DEATH_SECONDS = 10.0
RESTART_BACKOFF_MAX = 30


def _child_argv(argv: list[str], index: int, base_name: str) -> list[str]:
    args: list[str] = []
    skip = False
    for arg in argv[1:]:
        if skip:
            skip = False
            continue
        if arg in ("--concurrency", "-c", "--name"):
            skip = True
            continue
        if arg.startswith(("--concurrency=", "--name=")):
            continue
        args.append(arg)
    return [
        sys.executable,
        "-m",
        "spane_cli",
        *args,
        "--concurrency",
        "1",
        "--name",
        f"{base_name}-{index}",
    ]


def _end_orphans(workers: set[int]) -> None:
    """Kill the process groups of every child that is not one of our workers: commands a dead
    worker started, adopted by this subreaper. They would otherwise run on while the node is
    run again elsewhere."""
    import psutil

    for child in psutil.Process().children():
        if child.pid in workers:
            continue
        with contextlib.suppress(ProcessLookupError, PermissionError, psutil.Error):
            os.killpg(os.getpgid(child.pid), signal.SIGKILL)
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(child.pid, os.WNOHANG)  # a later look reaps it if it is not gone yet


def _restart_delay(index: int, code: int, lived: float, quick_deaths: dict[int, int]) -> float:
    """A child that keeps failing right after its start (a bad setting, a broken node type
    import: it exits with an error code) is restarted at once, then after 1, 2, 4 ... up to
    RESTART_BACKOFF_MAX seconds, not in a loop that floods the log and the database. One that
    lived a while, or was killed by a signal, is restarted at once."""
    if lived >= QUICK_DEATH_SECONDS or code < 0:
        quick_deaths[index] = 0
        return 0.0
    deaths = quick_deaths[index] = quick_deaths.get(index, 0) + 1
    return 0.0 if deaths == 1 else float(min(2 ** (deaths - 2), RESTART_BACKOFF_MAX))


def supervise(
    concurrency: int,
    argv: list[str],
    name: str | None,
    release: Callable[[str], None] = lambda identity: None,
    child_ended: Callable[[int], None] = lambda pid: None,
) -> int:
    """Run `concurrency` children until told to stop. When a child ends, `release(identity)`
    is called with the identity of the life that ended, before any replacement starts: its
    nodes go back on their queues at once instead of after a heartbeat TTL. `child_ended`
    gets the pid of each child that ended (its metrics files are let go)."""
    import socket

    base_name = name or f"{socket.gethostname()}.{os.getpid()}"
    requests: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        requests.append(signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    burst = "--burst" in argv or any(a.startswith("--max-jobs") for a in argv)
    children: dict[int, subprocess.Popen[bytes]] = {}

    child_env = {**os.environ, SUPERVISOR_ENV: str(os.getpid())}
    identities: dict[int, str] = {}

    started_at: dict[int, float] = {}
    quick_deaths: dict[int, int] = {}  # deaths in a row, each soon after its start
    restart_at: dict[int, float] = {}  # children waiting out a restart backoff

    def start(index: int) -> None:
        started_at[index] = time.monotonic()
        life = secrets.token_hex(4)
        identities[index] = worker_identity(f"{base_name}-{index}", life)
        children[index] = subprocess.Popen(
            _child_argv(argv, index, base_name), env={**child_env, LIFE_ENV: life}
        )

    # Orphaned commands of a child that died are adopted here and ended (_end_orphans).
    become_subreaper()
    for index in range(concurrency):
        start(index)
    forwarded = 0
    forced = False
    next_orphan_check = 0.0
    while children or (restart_at and not requests):
        if len(requests) > forwarded:
            hard = forwarded >= 1 or signal.SIGINT in requests[forwarded:]
            forced = forced or hard
            for child in children.values():
                if child.poll() is None:
                    child.send_signal(signal.SIGKILL if hard else signal.SIGTERM)
            forwarded = len(requests)
        for index, child in list(children.items()):
            code = child.poll()
            if code is None:
                continue
            del children[index]
            child_ended(child.pid)
            _end_orphans({c.pid for c in children.values()})
            try:
                release(identities[index])
            except Exception as exc:  # the heartbeat TTL recovers them later all the same
                log.warning("could not release the nodes of %s: %s", identities[index], exc)
            if requests or burst:
                continue
            delay = _restart_delay(index, code, time.monotonic() - started_at[index], quick_deaths)
            log.warning("worker %s-%s exited with %s; starting a new one in %.0f s",
                        base_name, index, code, delay)  # fmt: skip
            restart_at[index] = time.monotonic() + delay
        for index, when in list(restart_at.items()):
            if time.monotonic() >= when:
                del restart_at[index]
                start(index)
        if time.monotonic() >= next_orphan_check:
            # Also after a death: a dead worker's commands are adopted a moment later.
            _end_orphans({c.pid for c in children.values()})
            next_orphan_check = time.monotonic() + 1.0
        time.sleep(0.1)
    _end_orphans(set())
    return 1 if forced else 0  # as a single worker: a forced stop is not a clean one
