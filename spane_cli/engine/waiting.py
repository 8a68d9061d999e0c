"""Waiting for executions to end, in one place: `run --wait`, `run --local`, `watch`,
`events/logs --follow` and the bench all poll the same question. "Ended" means a status of
`TERMINAL_EXECUTION`, asked of the store's read side; the callers only say how often to look,
for how long, and what to do between looks."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from spane_cli.store import queries


@dataclass(frozen=True)
class Pace:
    """The pauses between looks: `first`, then each `growth` times longer, up to `longest`."""

    first: float
    longest: float
    growth: float = 1.5

    def pauses(self) -> Iterator[float]:
        pause = self.first
        while True:
            yield pause
            pause = min(pause * self.growth, self.longest)


# A command waiting for one result: quick answers for short runs, few queries for long ones.
COMMAND_PACE = Pace(first=0.05, longest=0.5)
# Between looks for new events or log lines once none came.
FOLLOW_PAUSE_SECONDS = 0.3


class EndWatch:
    """One look at a time: have these executions ended, has the time run out? `wait_for_end`
    asks in a loop; a worker asks between jobs (as its `should_stop`)."""

    def __init__(self, execution_ids: Collection[str], within: float | None = None) -> None:
        self.execution_ids = list(execution_ids)
        self.deadline = None if within is None else time.monotonic() + within

    def ended(self) -> bool:
        return queries.unfinished_count(self.execution_ids) == 0

    def out_of_time(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline


def wait_for_end(
    execution_ids: Collection[str],
    *,
    within: float | None = None,
    pace: Pace = COMMAND_PACE,
    on_poll: Callable[[], None] | None = None,
) -> bool:
    """Poll until every one of `execution_ids` has ended: True. False when `within` seconds
    pass first. `on_poll` runs before every look (a live view redraws there, the bench samples
    memory)."""
    watch = EndWatch(execution_ids, within)
    pauses = pace.pauses()
    while True:
        if on_poll is not None:
            on_poll()
        if watch.ended():
            return True
        if watch.out_of_time():
            return False
        time.sleep(next(pauses))


class HasId(Protocol):
    @property
    def id(self) -> int: ...


RowT = TypeVar("RowT", bound=HasId)


def follow_rows(
    execution_id: str,
    fetch: Callable[[int], Sequence[RowT]],
    follow: bool,
    pause: float = FOLLOW_PAUSE_SECONDS,
    within: float | None = None,
) -> Iterator[RowT]:
    """The rows `fetch(after_id)` returns, each once, in id order. Without `follow`, what is
    there now; with it, until the execution has ended and nothing is left to read (whether
    it ended is asked before reading, so rows written by its last moments are not lost), or
    until `within` seconds have passed."""
    watch = EndWatch([execution_id], within)
    last_id = 0
    while True:
        ended = watch.ended()
        rows = fetch(last_id)
        for row in rows:
            last_id = row.id
            yield row
        if not follow or (ended and not rows) or watch.out_of_time():
            return
        if not rows:
            time.sleep(pause)
