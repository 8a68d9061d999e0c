"""The in-process time limit, in the main thread (a signal) and in another (an exception
raised in that thread)."""

from __future__ import annotations

import threading
import time

import pytest

from spane_cli.engine.time_limit import TimeLimitExceeded, time_limit


def spin_until_stopped() -> float:
    started = time.monotonic()
    with pytest.raises(TimeLimitExceeded), time_limit(0.2):
        while True:
            try:
                while True:
                    pass
            except Exception:  # user code that swallows exceptions cannot swallow the limit
                pass
    return time.monotonic() - started


def test_the_main_thread_is_stopped_on_time() -> None:
    assert spin_until_stopped() < 1.5
    deadline = time.monotonic() + 0.3
    while time.monotonic() < deadline:
        pass  # busy after the block: a late alarm would land here


def test_another_thread_is_stopped_on_time() -> None:
    took: list[float] = []
    thread = threading.Thread(target=lambda: took.append(spin_until_stopped()))
    thread.start()
    thread.join(timeout=10)
    assert took and took[0] < 1.5


def test_a_block_that_ends_in_time_is_not_interrupted_later() -> None:
    def quick() -> None:
        with time_limit(0.05):
            pass
        deadline = time.monotonic() + 0.3
        while time.monotonic() < deadline:
            pass  # busy after the block: a late exception would land here

    errors: list[BaseException] = []

    def run() -> None:
        try:
            quick()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout=10)
    quick()
    assert errors == []
