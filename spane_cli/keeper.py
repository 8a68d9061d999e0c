"""The keeper: a small process beside each worker process that ends what the worker leaves
behind when it dies without cleaning up (kill -9, the OOM killer), and stops a worker stuck in
code that no signal can interrupt.

The death signal of a command (processes.die_with_parent) reaches only the worker's direct
child: the processes a shell command starts in turn (`a | b`, `cmd &`) would run on beside the
rerun of their node. The worker tells the keeper, over a pipe, which process groups it runs;
when the pipe closes (the worker is gone, however it went) the keeper kills those groups.

The keeper is also a watchdog: a python function stuck in one long C call is not stopped by
the worker's own time limit (the interpreter checks signals between bytecodes). The worker
tells the keeper the deadline of such a run; past it and its grace the keeper kills the
worker, whose node the recovery then fails as timed out (store/recovery.py).

And it watches the worker's pulse: a thread of the worker writes `H` every heartbeat. A worker
whose threads cannot run (one C call holding the interpreter) cannot beat either; its
heartbeat would go stale and its node would run again elsewhere while it still runs here. So
when no `H` has come for the liveness window, which ends before the heartbeat TTL does, the
keeper kills the worker first.

Lines on the pipe: `+PGID`, `-PGID`, `D SECONDS` (a deadline that many seconds from now),
`C` (deadline cleared), `L SECONDS` (the liveness window), `H` (a pulse). The keeper imports
nothing of spane, so it starts in milliseconds.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

log = logging.getLogger("spane.keeper")

# Past a run's own time limit, how long the keeper waits before it kills the worker.
STUCK_GRACE_SECONDS = 1.5


class Keeper:
    """The worker's side: starts the keeper process and tells it what to watch. Every call
    is best effort: a keeper that died is logged once and the worker goes on without it."""

    def __init__(self) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "spane_cli.keeper", str(os.getpid())],
            stdin=subprocess.PIPE,
            # Its own session: a signal to the worker's process group does not reach it.
            start_new_session=True,
            close_fds=True,
        )
        self._lock = threading.Lock()
        self._broken = False

    def _send(self, line: str) -> None:
        stdin = self._process.stdin
        if stdin is None or self._broken:
            return
        with self._lock:
            if self._broken:  # closed meanwhile (the pulse thread outlives a clean stop)
                return
            try:
                stdin.write(line.encode() + b"\n")
                stdin.flush()
            except (BrokenPipeError, OSError) as exc:
                self._broken = True
                log.warning("the keeper process is gone (%s); orphans are not watched", exc)

    def watch_group(self, pgid: int) -> None:
        self._send(f"+{pgid}")

    def forget_group(self, pgid: int) -> None:
        self._send(f"-{pgid}")

    @contextlib.contextmanager
    def deadline(self, seconds: float | None) -> Iterator[None]:
        """Kill this worker if the block has not ended `seconds` (plus a grace) from now."""
        if seconds is None:
            yield
            return
        self._send(f"D {seconds + STUCK_GRACE_SECONDS:.3f}")
        try:
            yield
        finally:
            self._send("C")

    def watch_pulse(self, every: float, window: float) -> None:
        """Send a pulse every `every` seconds from a thread of this process; the keeper kills
        the process when none came for `window` seconds."""
        self._send(f"L {window:.3f}")

        def pulse() -> None:
            while not self._broken and self._process.poll() is None:
                self._send("H")
                time.sleep(every)

        threading.Thread(target=pulse, daemon=True, name="keeper-pulse").start()

    def close(self) -> None:
        """A clean stop: the pipe closes, the keeper kills any group still registered (none,
        after a clean stop) and exits."""
        with self._lock:
            self._broken = True  # nothing is sent after this, the pulse included
            if self._process.stdin is not None:
                with contextlib.suppress(OSError):
                    self._process.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._process.wait(timeout=5)


_current: Keeper | None = None


def start() -> Keeper:
    """Start this process's keeper (once); nodes find it with `current()`."""
    global _current
    if _current is None:
        _current = Keeper()
    return _current


def current() -> Keeper | None:
    return _current


def stop() -> None:
    global _current
    if _current is not None:
        _current.close()
        _current = None


# -- the keeper process -------------------------------------------------------------------


def _kill_groups(groups: set[int]) -> None:
    for pgid in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)


def _serve(worker_pid: int, pipe: int) -> None:
    groups: set[int] = set()
    deadline: float | None = None  # of the run in progress
    window: float | None = None  # the liveness window
    last_pulse = time.monotonic()
    pending = b""
    while True:
        ends = [t for t in (deadline, None if window is None else last_pulse + window) if t]
        wait = None if not ends else max(min(ends) - time.monotonic(), 0.0)
        readable, _, _ = select.select([pipe], [], [], wait)
        if not readable:
            # Stuck past a run's deadline, or without a pulse: end it and what it runs.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(worker_pid, signal.SIGKILL)
            _kill_groups(groups)
            return
        chunk = os.read(pipe, 4096)
        if not chunk:  # the worker is gone
            _kill_groups(groups)
            return
        *lines, pending = (pending + chunk).split(b"\n")
        for line in lines:
            if line.startswith(b"+"):
                groups.add(int(line[1:]))
            elif line.startswith(b"-"):
                groups.discard(int(line[1:]))
            elif line.startswith(b"D "):
                deadline = time.monotonic() + float(line[2:])
            elif line == b"C":
                deadline = None
            elif line.startswith(b"L "):
                window = float(line[2:])
                last_pulse = time.monotonic()
            elif line == b"H":
                last_pulse = time.monotonic()


def main() -> None:
    # Ctrl-C in a terminal reaches the whole foreground group; the keeper must outlive its
    # worker to clean up after it, so it ignores the stop signals and ends on EOF.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _serve(int(sys.argv[1]), sys.stdin.fileno())


if __name__ == "__main__":
    main()
