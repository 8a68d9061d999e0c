"""The reconciler: re-dispatch what the database says is due. Runs on a tick in every worker,
one worker at a time on PostgreSQL (an advisory lock); the others skip that tick.

`tick(now)` takes the time as an argument so it is tested without sleeping.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import peewee

from spane_cli.engine import metrics
from spane_cli.engine.dispatch import Dispatcher
from spane_cli.store.records import Dispatch
from spane_cli.store.store import Store
from spane_cli.store.timers import restart_grace
from spane_cli.store.workers import HEARTBEAT_TTL_SECONDS, forget_silent, live_workers

# An outbox row younger than this is left alone: its job is probably on its way.
DISPATCH_GRACE_SECONDS = 2.0
# Unclaimed for this long although Redis has the job's hash: its id may have left the queue
# with a worker that died before claiming it. Sent again once its queue is empty (in a deep
# backlog an old row is only waiting its turn), or after the second limit in any case; a
# duplicate is harmless.
RESEND_AFTER_SECONDS = 60.0
RESEND_ANYWAY_AFTER_SECONDS = 900.0
# Outbox rows checked against Redis per tick before looking further; see _lost.
LOST_CHECK_SAMPLE = 50
_LOCK_KEY = 726532
# How long the heartbeat row of a worker that stopped beating stays: the longer of so many
# TTLs and a minimum, in seconds.
SILENT_WORKER_KEPT_TTLS = 10
SILENT_WORKER_KEPT_MIN = 60.0


@contextmanager
def _one_at_a_time(database: peewee.Database) -> Iterator[bool]:
    if not isinstance(database, peewee.PostgresqlDatabase):
        yield True  # SQLite means one machine; a duplicate pass is harmless there
        return
    got = bool(database.execute_sql("SELECT pg_try_advisory_lock(%s)", (_LOCK_KEY,)).fetchone()[0])
    try:
        yield got
    finally:
        if got:
            database.execute_sql("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))


def tick(
    store: Store,
    dispatcher: Dispatcher,
    now: float | None = None,
    heartbeat_ttl: float = HEARTBEAT_TTL_SECONDS,
) -> list[Dispatch]:
    """One pass; returns what it (re-)enqueued, or nothing when another worker holds the tick.
    A worker whose heartbeat is older than `heartbeat_ttl` counts as gone."""
    now = time.time() if now is None else now
    with _one_at_a_time(store.database) as mine:
        if not mine:
            return []
        woken = store.wake_due(now)
        timed_out = store.expire_timeouts(now)
        alive = {w.name for w in live_workers(now, heartbeat_ttl)}
        recovered = store.recover_lost(alive, now - heartbeat_ttl, now)
        repaired = store.repair_stalled(now=now)
        dispatches = woken + recovered + repaired
        # After recovery has seen them: a dead life's heartbeat row is kept a while for
        # `spane health` to show, then removed.
        forget_silent(now - max(SILENT_WORKER_KEPT_TTLS * heartbeat_ttl, SILENT_WORKER_KEPT_MIN))
        lost = _lost(store, dispatcher, now)
        lost_keys = {(d.execution_id, d.node_id, d.item) for d in lost}
        stale = [
            d
            for d in _stale(store, dispatcher, now)
            if (d.execution_id, d.node_id, d.item) not in lost_keys
        ]
        again = lost + stale
        restart_grace(again, now)
        dispatches += again
        dispatcher.enqueue(dispatches)
        recorder = metrics.active()
        if recorder is not None:
            for action, done in (
                ("woken", woken), ("timed_out", timed_out), ("recovered", recovered),
                ("repaired", repaired), ("resent", again),
            ):  # fmt: skip
                recorder.count_reconciled(action, len(done))
        return dispatches


def _lost(store: Store, dispatcher: Dispatcher, now: float) -> list[Dispatch]:
    """Outbox rows past the grace period whose job is gone from Redis. The oldest few are
    checked first and the rest only when one of them is missing: a flush or a restart loses
    every job, and a single lost job becomes one of the oldest rows as the queue drains. So a
    backlog of 10,000 queued nodes costs one small check per tick, not 10,000."""
    older_than = now - DISPATCH_GRACE_SECONDS
    sample = store.pending_dispatches(older_than, limit=LOST_CHECK_SAMPLE)
    lost = dispatcher.missing(sample)
    if lost and len(sample) == LOST_CHECK_SAMPLE:
        lost = dispatcher.missing(store.pending_dispatches(older_than))
    return lost


def _stale(store: Store, dispatcher: Dispatcher, now: float) -> list[Dispatch]:
    rows = store.pending_dispatches(now - RESEND_AFTER_SECONDS)
    if not rows:
        return []
    empty = {name for name in {d.queue for d in rows} if dispatcher.queue(name).count == 0}
    if len(empty) == len({d.queue for d in rows}):
        return rows
    anyway = store.pending_dispatches(now - RESEND_ANYWAY_AFTER_SECONDS)
    keys = {(d.execution_id, d.node_id, d.item) for d in anyway}
    return [d for d in rows if d.queue in empty or (d.execution_id, d.node_id, d.item) in keys]
