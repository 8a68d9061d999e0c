"""A time limit on code that runs in the worker's own process (python functions, template
rendering). In the main thread a signal enforces it, as RQ and Celery do; in another thread
(the extra workers of `spane run --local`) a timer raises the same exception in that thread
asynchronously. Either way the interpreter stops the code between two bytecodes, so a loop
that never ends cannot keep the worker; a single long C call finishes first."""

from __future__ import annotations

import ctypes
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType


class TimeLimitExceeded(BaseException):
    """Raised in the limited code when its time is up. A BaseException, so a node's own
    `except Exception` cannot swallow it."""


@contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    """Raise TimeLimitExceeded in this block after `seconds` (None: no limit)."""
    if seconds is None:
        yield
    elif threading.current_thread() is threading.main_thread():
        with _by_signal(seconds):
            yield
    else:
        with _by_async_exception(seconds):
            yield


@contextmanager
def _by_signal(seconds: float) -> Iterator[None]:
    def on_alarm(_signum: int, _frame: FrameType | None) -> None:
        raise TimeLimitExceeded()

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.001))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@contextmanager
def _by_async_exception(seconds: float) -> Iterator[None]:
    target = ctypes.c_ulong(threading.get_ident())
    guard = threading.Lock()  # the timer must not fire once the block has left
    state = {"inside": True, "fired": False}

    def expire() -> None:
        with guard:
            if state["inside"]:
                state["fired"] = True
                exception = ctypes.py_object(TimeLimitExceeded)
                ctypes.pythonapi.PyThreadState_SetAsyncExc(target, exception)

    timer = threading.Timer(max(seconds, 0.001), expire)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        with guard:
            state["inside"] = False
            if state["fired"]:
                # Not delivered yet (the block ended first): it must not hit the caller.
                ctypes.pythonapi.PyThreadState_SetAsyncExc(target, None)
        timer.cancel()
