"""Many followers of executions, one reader: the events and log lines of every execution that
someone follows in this process, read by ONE thread with one query per look for all of them
(`queries.follow_batch`), and handed to each follower after its own cursor.

A follower says where it is (the id of the last row it has) and gets every row after it, in
id order, each once, until the execution has ended and nothing is left to read. Whether it
ended is read in the same statement as the rows, so the last rows are never left behind.

Ids are handed out by a sequence before the transaction that wrote the row commits, so on
PostgreSQL a row may become visible after a row with a higher id (two transactions of one
execution committing in the other order). A follower whose cursor moved past the late one
would never see it. So on PostgreSQL a row is handed out only once it has been seen for
`settle` seconds, and only after every row of its execution with a lower id: a transaction
that wrote a lower id has committed by then (spane writes events and log lines just before
its commits). SQLite commits one writer at a time in id order: no wait there.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from spane_cli.states import TERMINAL_EXECUTION
from spane_cli.store import queries

log = logging.getLogger(__name__)

EVENTS = "event"
LOGS = "node_log"
KINDS = (EVENTS, LOGS)

# How often the reader looks while someone follows (what `spane events --follow` waits).
POLL_INTERVAL = 0.3
# How long a row is seen before it is handed out on PostgreSQL (see the module's docstring).
POSTGRES_SETTLE = 0.5
# Rows per look; a look that filled it looks again at once.
READ_LIMIT = 1000

Deliver = Callable[[Sequence[Any], bool], None]
Reader = Callable[[str, Mapping[str, int], int], queries.FollowBatch]


# The largest id a BIGINT column holds.
MAX_ROW_ID = 2**63 - 1


@dataclass(eq=False)
class Follower:
    """One client following one execution. `deliver(rows, ended)` is called from the reader's
    thread; `ready()` says whether it can take more now (a slow client is skipped, and read
    again from its cursor later, instead of piling rows up in memory)."""

    kind: str
    execution_id: str
    cursor: int
    deliver: Deliver
    node_id: str | None = None
    ready: Callable[[], bool] = field(default=lambda: True)
    done: bool = False


@dataclass
class FeedStats:
    """What the reader has cost: `polls` looks, `queries` statements sent (one per kind that
    has followers, per look), `errors` looks that failed."""

    polls: int = 0
    queries: int = 0
    errors: int = 0


class FeedPoller:
    """The process's reader. It runs on its own thread while anyone follows, and stops when
    the last follower leaves."""

    def __init__(
        self,
        *,
        interval: float = POLL_INTERVAL,
        settle: float = 0.0,
        limit: int = READ_LIMIT,
        read: Reader = queries.follow_batch,
        background: bool = True,
    ) -> None:
        """`background=False`: no thread, the owner calls `poll` (tests do)."""
        self.interval = interval
        self.settle = settle
        self.limit = limit
        self._read = read
        self._background = background
        self._lock = threading.Lock()
        self._followers: set[Follower] = set()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._first_seen: dict[tuple[str, int], tuple[str, float]] = {}
        self._ended_since: dict[tuple[str, str], float] = {}
        self.stats = FeedStats()

    # -- following -------------------------------------------------------------------------

    def follow(
        self,
        kind: str,
        execution_id: str,
        after: int,
        deliver: Deliver,
        *,
        node_id: str | None = None,
        ready: Callable[[], bool] | None = None,
    ) -> Follower:
        if kind not in KINDS:
            raise ValueError(f"unknown feed {kind!r}")
        # Within the id column's range: all cursors go into one statement, and one outside it
        # would fail the reads of every follower.
        cursor = min(max(0, after), MAX_ROW_ID)
        follower = Follower(kind, execution_id, cursor, deliver, node_id)
        if ready is not None:
            follower.ready = ready
        with self._lock:
            self._followers.add(follower)
            if self._background and (self._thread is None or not self._thread.is_alive()):
                self._thread = threading.Thread(
                    target=self._run, name="spane-feed-poller", daemon=True
                )
                self._thread.start()
        self._wake.set()  # a new follower gets its first rows without waiting a whole pause
        return follower

    def unfollow(self, follower: Follower) -> None:
        with self._lock:
            self._followers.discard(follower)

    def counts(self) -> tuple[int, int]:
        """(followers, executions followed) right now."""
        with self._lock:
            return len(self._followers), len({f.execution_id for f in self._followers})

    # -- the reader ------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._lock:
                if not self._followers:
                    self._thread = None
                    return
            self._wake.clear()
            try:
                again = self.poll()
            except Exception:  # the database went away: keep the followers, look again later
                self.stats.errors += 1
                log.warning("reading followed executions failed", exc_info=True)
                again = False
            if not again:
                self._wake.wait(self.interval)

    def poll(self, now: float | None = None) -> bool:
        """One look for every follower. True when a read was cut at its limit (look again
        at once)."""
        with self._lock:
            followers = [f for f in self._followers if not f.done]
        if not followers:
            return False
        self.stats.polls += 1
        again = False
        for kind in KINDS:
            mine = [f for f in followers if f.kind == kind and f.ready()]
            if mine:
                again |= self._poll_kind(kind, mine, now)
        return again

    def _poll_kind(self, kind: str, followers: list[Follower], now: float | None) -> bool:
        cursors: dict[str, int] = {}
        for follower in followers:
            known = cursors.get(follower.execution_id)
            cursors[follower.execution_id] = (
                follower.cursor if known is None else min(known, follower.cursor)
            )
        started = time.monotonic() if now is None else now
        self.stats.queries += 1
        batch = self._read(kind, cursors, self.limit)
        by_execution: dict[str, list[Any]] = {}
        for row in batch.rows:
            by_execution.setdefault(row.execution_id, []).append(row)
        for execution_id in cursors:
            released, held = self._settled(kind, by_execution.get(execution_id, []), started)
            ended = batch.complete and not held and self._ended(kind, batch, execution_id, started)
            for follower in followers:
                if follower.execution_id == execution_id:
                    self._hand_out(follower, released, ended)
        self._forget(kind)
        return not batch.complete

    def _settled(self, kind: str, rows: list[Any], now: float) -> tuple[list[Any], bool]:
        """The rows that may be handed out (a prefix, in id order), and whether any is held."""
        if self.settle <= 0:
            return rows, False
        released: list[Any] = []
        held = False
        for row in rows:  # every row's first sighting is noted, held ones' too
            _, first = self._first_seen.setdefault((kind, row.id), (row.execution_id, now))
            held = held or now - first < self.settle
            if not held:
                released.append(row)
        return released, held

    def _ended(self, kind: str, batch: queries.FollowBatch, execution_id: str, now: float) -> bool:
        """Ended, and seen ended for `settle` seconds (an execution that is gone has ended)."""
        status = batch.statuses.get(execution_id)
        if status is not None and status not in TERMINAL_EXECUTION:
            return False
        since = self._ended_since.setdefault((kind, execution_id), now)
        return now - since >= self.settle

    def _hand_out(self, follower: Follower, rows: list[Any], ended: bool) -> None:
        fresh = [row for row in rows if row.id > follower.cursor]
        if fresh:
            follower.cursor = fresh[-1].id
        mine = [row for row in fresh if follower.node_id in (None, row.node_id)]
        # `rows` held everything after the lowest cursor of the execution, so an ended
        # execution has nothing left for this follower either.
        if not mine and not ended:
            return
        if ended:
            follower.done = True
            self.unfollow(follower)
        try:
            follower.deliver(mine, ended)
        except Exception:  # a client that went away while its rows were handed over
            follower.done = True
            self.unfollow(follower)

    def _forget(self, kind: str) -> None:
        """Drop what no follower needs any more: first sightings of rows every follower of
        their execution has, ended marks of executions nobody follows."""
        lowest: dict[str, int] = {}
        with self._lock:
            for f in self._followers:
                if f.kind == kind:
                    lowest[f.execution_id] = min(lowest.get(f.execution_id, f.cursor), f.cursor)
            followed = {(f.kind, f.execution_id) for f in self._followers}
        for key, (execution_id, _) in list(self._first_seen.items()):
            if key[0] == kind and key[1] <= lowest.get(execution_id, key[1]):
                del self._first_seen[key]
        for ended_key in [k for k in self._ended_since if k not in followed]:
            del self._ended_since[ended_key]


_shared: FeedPoller | None = None
_shared_lock = threading.Lock()


def shared_poller(postgres: bool) -> FeedPoller:
    """The process's one reader (made on first use)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = FeedPoller(settle=POSTGRES_SETTLE if postgres else 0.0)
        return _shared
