"""The reconciler: re-dispatch what the database says is due. Runs on a tick in every worker,
one worker at a time on PostgreSQL (an advisory lock); the others skip that tick.

`fire_schedules(now)` is the schedules' part of it: every worker runs it, each second, on a
thread of its own, so that a worker busy with a long node still fires schedules; which
worker fires a given schedule is decided by the schedule row's lock (store/schedules.py).

`tick(now)` and `fire_schedules(now)` take the time as an argument so they are tested
without sleeping.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

import peewee
from redis.exceptions import RedisError

from spane_cli.engine import metrics
from spane_cli.engine.dispatch import Dispatcher, band_queue
from spane_cli.engine.scheduling import schedule_input
from spane_cli.store.records import Dispatch
from spane_cli.store.retention import Selection
from spane_cli.store.schedules import FireOutcome
from spane_cli.store.store import Store
from spane_cli.store.timers import restart_grace
from spane_cli.store.workers import (
    HEARTBEAT_EVERY_SECONDS,
    HEARTBEAT_TTL_SECONDS,
    forget_silent,
    live_workers,
)
from spane_cli.timeutil import iso

log = logging.getLogger("spane.reconciler")

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
# Executions a worker deletes per tick under SPANE_RETENTION: small, beside its real work.
RETENTION_BATCH = 50


def _named(dispatches: list[Dispatch], shown: int = 5) -> str:
    names = [f"{d.execution_id[:8]}/{d.node_id}" for d in dispatches[:shown]]
    return ", ".join(names) + (" ..." if len(dispatches) > shown else "")


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
    retention: float | None = None,
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
        if recovered:
            log.warning("recovered %d nodes of lost workers: %s", len(recovered),
                        _named(recovered))  # fmt: skip
        repaired = store.repair_stalled(now=now) + store.sweep_pools(now)
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
        again = store.with_priorities(lost + stale)
        restart_grace(again, now)
        dispatches += again
        dispatcher.enqueue(dispatches)
        if retention is not None:
            store.gc_batch(Selection(now - retention), limit=RETENTION_BATCH)
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
    # Each row waits on its priority band: that band's emptiness says its turn has passed.
    rows = store.with_priorities(rows)
    bands = {band_queue(d.queue, d.priority) for d in rows}
    empty = {name for name in bands if dispatcher.queue(name).count == 0}
    if len(empty) == len(bands):
        return rows
    anyway = store.pending_dispatches(now - RESEND_ANYWAY_AFTER_SECONDS)
    keys = {(d.execution_id, d.node_id, d.item) for d in anyway}
    return [
        d
        for d in rows
        if band_queue(d.queue, d.priority) in empty or (d.execution_id, d.node_id, d.item) in keys
    ]


def fire_schedules(
    store: Store,
    dispatcher: Dispatcher,
    now: float | None = None,
    heartbeat_every: float = HEARTBEAT_EVERY_SECONDS,
) -> list[FireOutcome]:
    """Fire what is due: schedules whose next fire time has come, and open backfills. When
    nothing is due this costs one query. A fire time counts as covered by a worker up to two
    heartbeat periods after that worker's last beat (`heartbeat_every`)."""
    now = time.time() if now is None else now
    outcomes: list[FireOutcome] = []
    for name, backfill_id in store.due_schedule_work(now):
        if backfill_id is not None:
            outcome = store.advance_backfill(backfill_id, now, schedule_input)
        else:
            outcome = _fire(store, name, now, 2 * heartbeat_every)
        outcomes.append(outcome)
        if outcome.dispatches:
            # Redis down: the outbox rows are committed, the reconciler sends them later.
            with contextlib.suppress(RedisError):
                dispatcher.enqueue(outcome.dispatches)
    return outcomes


def _fire(store: Store, name: str, now: float, slack: float) -> FireOutcome:
    outcome = store.fire_schedule(name, now, schedule_input, slack)
    if not outcome.cancel_first:
        return outcome
    # overlap: replace. The previous execution ends first, in transactions of its own; a
    # worker killed in between leaves it cancelled and the fire still due, done next tick.
    fire_time = next((p.fire_time for p in outcome.plans if p.replaces), now)
    for execution_id in outcome.cancel_first:
        store.cancel_replaced(
            execution_id, f"replaced by the fire of {iso(fire_time)} of schedule {name}", now
        )
    return store.fire_schedule(name, now, schedule_input, slack)
