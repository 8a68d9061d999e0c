"""`shell`: runs a command (`run` through /bin/sh, or `args` as argv) in its own process group.

The whole process group is the unit of work: a timeout, a cancel, or the end of the command
takes down every process it started, so nothing a node launched outlives the node on the
worker. Secret values are masked in everything captured.
"""

from __future__ import annotations

import codecs
import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from typing import IO, Any, ClassVar

import psutil

from spane_cli import keeper
from spane_cli.nodes.base import NodeContext, NodeResult
from spane_cli.nodes.common import (
    OUTPUT_CAP_BYTES,
    ConfigError,
    as_text,
    cut_notice,
    decode,
    render_field,
)
from spane_cli.processes import die_with_parent
from spane_cli.workflow.durations import format_duration
from spane_cli.workflow.model import thaw
from spane_cli.workflow.node_configs import SHELL

CANCEL_POLL_SECONDS = 0.2
KILL_GRACE_SECONDS = 2.0
# Secrets reach a command only when the workflow maps them into `env` explicitly, as in
# GitHub Actions; the worker's own SPANE_SECRET_* variables are not inherited.
_SECRET_ENV_PREFIX = "SPANE_SECRET_"
_NOT_RUNNING = (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)


class _TailBuffer:
    """Keeps the last `cap` bytes written and counts what was dropped."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.data = bytearray()
        self.cut = 0

    def write(self, chunk: bytes) -> None:
        self.data += chunk
        excess = len(self.data) - self.cap
        if excess > 0:
            del self.data[:excess]
            self.cut += excess

    def text(self) -> str:
        kept = decode(bytes(self.data))
        return cut_notice(self.cut) + kept if self.cut else kept


class _Capture:
    """Drains stdout and stderr on threads so a big output never blocks the child. With a
    `stream`, both streams' text also goes there as it arrives, in arrival order."""

    def __init__(
        self, process: subprocess.Popen[bytes], stream: Callable[[str], None] | None = None
    ) -> None:
        self.stdout = _TailBuffer(OUTPUT_CAP_BYTES)
        self.stderr = _TailBuffer(OUTPUT_CAP_BYTES)
        # Both streams in arrival order, for `spane logs`.
        self.combined = _TailBuffer(2 * OUTPUT_CAP_BYTES)
        self._lock = threading.Lock()
        self._stream = stream
        assert process.stdout is not None and process.stderr is not None
        self._threads = [
            threading.Thread(target=self._drain, args=(stream, buffer), daemon=True)
            for stream, buffer in ((process.stdout, self.stdout), (process.stderr, self.stderr))
        ]
        for thread in self._threads:
            thread.start()

    def _drain(self, stream: IO[bytes], buffer: _TailBuffer) -> None:
        # A character split between two reads is decoded once whole.
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        with stream:
            while chunk := stream.read1(65536):  # type: ignore[attr-defined]
                with self._lock:
                    buffer.write(chunk)
                    if self._stream is not None:
                        self._stream(decoder.decode(chunk))
                    else:
                        self.combined.write(chunk)
        if self._stream is not None:
            with self._lock:
                self._stream(decoder.decode(b"", final=True))

    def finish(self, timeout: float) -> None:
        """Wait for both pipes to close; a process that escaped the group (setsid) may keep
        one open, so give up after `timeout` and keep what was read."""
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(deadline - time.monotonic(), 0))


def _group_alive(pgid: int) -> bool:
    """True while a live (non-zombie) process is in the group.

    kill(pgid, 0) alone also counts zombies, which linger where PID 1 does not reap
    orphans (containers), so the group's members are looked at one by one.
    """
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    for pid in psutil.pids():
        try:
            if os.getpgid(pid) == pgid and psutil.Process(pid).status() not in _NOT_RUNNING:
                return True
        except (OSError, psutil.Error):  # gone meanwhile, or not ours to look at
            continue
    return False


def _kill_group(pgid: int) -> None:
    """SIGTERM the whole group, then SIGKILL whatever is still there after the grace time."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + KILL_GRACE_SECONDS
    while time.monotonic() < deadline:
        if not _group_alive(pgid):
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
    # SIGKILL cannot be ignored; wait briefly so callers see the group gone.
    deadline = time.monotonic() + KILL_GRACE_SECONDS
    while time.monotonic() < deadline and _group_alive(pgid):
        time.sleep(0.02)


def _cancelled(cancel_requested: Callable[[], bool] | None) -> bool:
    if cancel_requested is None:
        return False
    try:
        return bool(cancel_requested())
    except Exception:  # a flaky cancel check (store hiccup) must not fail the node
        return False


def _wait(
    process: subprocess.Popen[bytes],
    timeout: float | None,
    cancel_requested: Callable[[], bool] | None,
) -> str | None:
    """Wait for the command; returns "timeout" or "cancelled" when it had to be stopped."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        step = CANCEL_POLL_SECONDS if cancel_requested is not None else None
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                return "timeout"
            step = left if step is None else min(step, left)
        try:
            process.wait(timeout=step)
            return None
        except subprocess.TimeoutExpired:
            pass
        if _cancelled(cancel_requested):
            return "cancelled"


def _command(context: NodeContext, config: dict[str, Any]) -> tuple[list[str], str]:
    """argv and a short description of the command for error messages."""
    if "run" in config:
        script = as_text(render_field(context, "config.run", config["run"]))
        return ["/bin/sh", "-c", script], "/bin/sh"
    argv = [
        as_text(render_field(context, f"config.args[{index}]", item))
        for index, item in enumerate(config["args"])
    ]
    return argv, argv[0]


def _environment(context: NodeContext, config: dict[str, Any]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_SECRET_ENV_PREFIX)}
    for name, value in (config.get("env") or {}).items():
        env[name] = as_text(render_field(context, f"config.env.{name}", value))
    env["SPANE_EXECUTION_ID"] = context.execution_id
    env["SPANE_NODE_ID"] = context.node_id
    env["SPANE_ATTEMPT"] = str(context.attempt)
    return env


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


def _last_line(text: str) -> str:
    for line in reversed(text.splitlines()):
        if line.strip():
            return line.strip()
    return ""


class ShellNode:
    type_name: ClassVar[str] = "shell"
    config_schema: ClassVar[dict[str, Any]] = SHELL

    def run(self, context: NodeContext) -> NodeResult:
        config = thaw(context.config)
        try:
            argv, program = _command(context, config)
            env = _environment(context, config)
            cwd = (
                as_text(render_field(context, "config.cwd", config["cwd"]))
                if "cwd" in config
                else None
            )
        except ConfigError as exc:
            return NodeResult.failed(context.mask(str(exc)))

        try:
            process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
                cwd=cwd,
                start_new_session=True,  # its own process group, so the whole tree can be killed
                # Killed if the worker dies (kill -9): it must not run on beside the rerun.
                preexec_fn=die_with_parent,
            )
        except FileNotFoundError as exc:
            missing = exc.filename if exc.filename is not None else program
            what = "working directory" if cwd is not None and missing == cwd else "command"
            return NodeResult.failed(context.mask(f"{what} not found: {missing}"))
        except OSError as exc:
            return NodeResult.failed(context.mask(f"cannot start {program}: {exc.strerror}"))

        # The keeper ends the group if this worker dies without doing it (kill -9).
        watcher = keeper.current()
        if watcher is not None:
            watcher.watch_group(process.pid)
        capture = _Capture(process, context.log_stream)
        stopped = _wait(process, context.timeout, context.cancel_requested)
        # Stop whatever is left of the group: everything on a timeout or cancel, and
        # background processes the command left behind when it exited by itself.
        if stopped is not None or _group_alive(process.pid):
            _kill_group(process.pid)
        exit_code = process.wait()
        if watcher is not None:
            watcher.forget_group(process.pid)
        capture.finish(KILL_GRACE_SECONDS)

        stdout = context.mask(capture.stdout.text())
        stderr = context.mask(capture.stderr.text())
        # Streamed output is already on its way to the database: not handed back twice.
        logs = "" if context.log_stream is not None else context.mask(capture.combined.text())
        if stopped == "timeout":
            assert context.timeout is not None
            return NodeResult.failed(f"timed out after {format_duration(context.timeout)}", logs)
        if stopped == "cancelled":
            return NodeResult.failed("cancelled", logs)
        if exit_code != 0:
            error = (
                f"killed by signal {_signal_name(-exit_code)}"
                if exit_code < 0
                else (f"exit code {exit_code}")
            )
            reason = _last_line(stderr)
            return NodeResult.failed(
                f"{error}: {reason}" if reason else error, logs, exit_code=exit_code
            )

        output: dict[str, Any] = {"exit_code": exit_code, "stdout": stdout, "stderr": stderr}
        if config.get("parse") == "json":
            try:
                output["json"] = json.loads(stdout)
            except json.JSONDecodeError as exc:
                cut = " (stdout was cut at 64 KiB)" if capture.stdout.cut else ""
                return NodeResult.failed(f"parse: json: stdout is not JSON{cut}: {exc}", logs)
        return NodeResult.ok(output, logs)
