"""`print()` inside a python node goes to that node's logs, even with foreach threads.

sys.stdout and sys.stderr are process-wide, so they are replaced once by a proxy that sends
each thread's writes to that thread's capture buffer when one is open, and to the real stream
otherwise (the worker's own output and other threads are untouched).
"""

from __future__ import annotations

import io
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TextIO

_install_lock = threading.Lock()


class _PerThreadStream:
    def __init__(self, original: TextIO) -> None:
        self._original = original
        self._local = threading.local()

    def write(self, text: str) -> int:
        target = getattr(self._local, "buffer", None)
        return (target if target is not None else self._original).write(text)

    def flush(self) -> None:
        if getattr(self._local, "buffer", None) is None:
            self._original.flush()

    def __getattr__(self, name: str) -> Any:  # isatty, encoding, fileno... of the real stream
        return getattr(self._original, name)


def _proxy(name: str) -> _PerThreadStream:
    with _install_lock:
        current = getattr(sys, name)
        if not isinstance(current, _PerThreadStream):
            current = _PerThreadStream(current)
            setattr(sys, name, current)
        return current


class _Forwarding(io.StringIO):
    """Hands each write on instead of keeping it."""

    def __init__(self, forward: Callable[[str], None]) -> None:
        super().__init__()
        self._forward = forward

    def write(self, text: str) -> int:
        self._forward(text)
        return len(text)


@contextmanager
def captured_output(forward: Callable[[str], None] | None = None) -> Iterator[io.StringIO]:
    """Everything this thread prints (stdout and stderr) while inside, in one buffer; or,
    with `forward`, handed to it as it is written (the buffer then stays empty)."""
    buffer = io.StringIO() if forward is None else _Forwarding(forward)
    streams = [_proxy("stdout"), _proxy("stderr")]
    previous = [getattr(s._local, "buffer", None) for s in streams]
    for stream in streams:
        stream._local.buffer = buffer
    try:
        yield buffer
    finally:
        for stream, before in zip(streams, previous, strict=True):
            stream._local.buffer = before
