"""Starts put off by a rate limit or an open breaker, through the Store: the node stays queued
without a job until its due time, `get` says what it waits for, and the reconciler's wake
dispatches it once, with its priority; on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from typing import Any

from store_steps import claim_one, complete_one
from test_concurrent_transitions import version

from spane_cli.store import events
from spane_cli.store.models import Event, Execution, NodeItem, NodeRun, Outbox
from spane_cli.store.records import Dispatch, Report
from spane_cli.store.store import Store
from spane_cli.store.waits import waiting_reasons
from spane_cli.timeutil import iso

RATE = "rate limit workflow (5/s)"
QUEUE = "batch"


def limited(store: Store, **node: Any) -> int:
    """A workflow of one rate-limited node, `fetch`, of priority 7 on queue `batch`."""
    fields = {"type": "noop", "priority": 7, "queue": QUEUE, "rate_limit": "5/s", **node}
    return version(store, {"fetch": fields}, f"limited-{uuid.uuid4().hex[:8]}")


def started(store: Store, version_id: int, now: float = 1000.0) -> str:
    return store.create_execution(version_id, {}, now=now)[0]


def shown(store: Store, execution_id: str) -> dict[str, str]:
    """The "waiting for" column of `spane get`, with a worker serving the node's queue."""
    execution = Execution.get_by_id(execution_id)
    workflow = store.versions.get(execution.version_id).workflow
    return waiting_reasons(execution, workflow, {QUEUE})


def jobs(execution_id: str) -> list[tuple[str, int, int | None]]:
    rows = Outbox.select().where(Outbox.execution_id == execution_id).order_by(Outbox.id)
    return [(row.node_id, row.attempt, row.item) for row in rows]


def deferrals(execution_id: str) -> list[dict[str, Any]]:
    rows = (
        Event.select()
        .where((Event.execution_id == execution_id) & (Event.type == events.NODE_DEFERRED))
        .order_by(Event.id)
    )
    return [row.data for row in rows]


def woken(store: Store, execution_ids: list[str], now: float) -> list[Dispatch]:
    """The reconciler's pass at `now`, as far as these executions go (the database is
    shared with other tests)."""
    return [d for d in store.wake_due(now=now) if d.execution_id in execution_ids]


def node(execution_id: str) -> NodeRun:
    return NodeRun.get((NodeRun.execution == execution_id) & (NodeRun.node_id == "fetch"))


def test_a_deferred_node_waits_without_a_job_and_get_says_until_when(store: Store) -> None:
    execution_id = started(store, limited(store))
    assert jobs(execution_id) == [("fetch", 1, None)]
    assert shown(store, execution_id) == {"fetch": f"a free worker on queue {QUEUE}"}
    assert store.defer_start(execution_id, "fetch", 1, None, 1002.5, RATE, now=1000.1)
    row = node(execution_id)
    assert (row.status, row.due_at, row.attempt) == ("queued", 1002.5, 1)
    assert jobs(execution_id) == []  # nothing holds a worker or re-sends it before its time
    assert deferrals(execution_id) == [{"attempt": 1, "reason": RATE, "until": 1002.5}]
    assert shown(store, execution_id) == {"fetch": f"{RATE} until {iso(1002.5)}"}


def test_a_node_no_longer_queued_is_not_deferred_and_the_caller_is_told(store: Store) -> None:
    version_id = limited(store)
    cancelled = started(store, version_id)
    store.cancel(cancelled, now=1000.5)
    assert not store.defer_start(cancelled, "fetch", 1, None, 1010.0, RATE, now=1001.0)
    assert (node(cancelled).status, node(cancelled).due_at) == ("cancelled", None)
    assert deferrals(cancelled) == []

    claimed = started(store, version_id)
    claim = claim_one(store, claimed, "fetch", 1, "w", now=1000.5)
    assert claim is not None
    assert not store.defer_start(claimed, "fetch", 1, None, 1010.0, RATE, now=1001.0)
    assert (node(claimed).status, node(claimed).due_at) == ("running", None)
    assert deferrals(claimed) == []
    assert woken(store, [cancelled, claimed], now=1010.0) == []
    complete_one(store, claim, Report("succeeded"), now=1011.0)
    assert Execution.get_by_id(claimed).status == "succeeded"

    stale = started(store, version_id)  # a job of an attempt that is not the node's
    assert not store.defer_start(stale, "fetch", 2, None, 1010.0, RATE, now=1001.0)
    assert jobs(stale) == [("fetch", 1, None)]
    assert node(stale).due_at is None
    assert deferrals(stale) == []


def test_the_wake_at_the_due_time_dispatches_it_once_with_its_priority(store: Store) -> None:
    version_id = limited(store)
    on_time, late = started(store, version_id), started(store, version_id)
    assert store.defer_start(on_time, "fetch", 1, None, 2000.0, RATE, now=1000.0)
    assert store.defer_start(late, "fetch", 1, None, 1500.0, RATE, now=1000.0)
    both = [on_time, late]
    assert woken(store, both, now=1499.99) == []
    assert woken(store, both, now=1999.99) == [Dispatch(late, "fetch", 1, QUEUE, None, 7)]
    assert woken(store, both, now=2000.0) == [Dispatch(on_time, "fetch", 1, QUEUE, None, 7)]
    assert woken(store, both, now=2000.0) == []  # called twice: dispatched once
    assert woken(store, both, now=9000.0) == []
    for execution_id in both:
        assert jobs(execution_id) == [("fetch", 1, None)]
        assert (node(execution_id).status, node(execution_id).due_at) == ("queued", None)
        assert shown(store, execution_id) == {"fetch": f"a free worker on queue {QUEUE}"}
        claim = claim_one(store, execution_id, "fetch", 1, "w", now=2001.0)
        assert claim is not None and claim.attempt == 1  # the same attempt
        complete_one(store, claim, Report("succeeded"), now=2002.0)
        assert Execution.get_by_id(execution_id).status == "succeeded"


def test_a_node_put_off_again_shows_its_latest_reason(store: Store) -> None:
    execution_id = started(store, limited(store))
    assert store.defer_start(execution_id, "fetch", 1, None, 1001.0, RATE, now=1000.0)
    assert len(woken(store, [execution_id], now=1001.0)) == 1
    breaker = "circuit breaker open for host api.example.com"
    assert store.defer_start(execution_id, "fetch", 1, None, 1031.0, breaker, now=1001.1)
    assert shown(store, execution_id) == {"fetch": f"{breaker} until {iso(1031.0)}"}
    assert jobs(execution_id) == []
    assert woken(store, [execution_id], now=1030.0) == []
    assert woken(store, [execution_id], now=1031.0) == [
        Dispatch(execution_id, "fetch", 1, QUEUE, None, 7)
    ]


def test_a_deferred_node_of_a_paused_execution_is_woken_after_the_resume(store: Store) -> None:
    execution_id = started(store, limited(store))
    assert store.defer_start(execution_id, "fetch", 1, None, 1001.0, RATE, now=1000.0)
    store.set_paused(execution_id, True, now=1000.5)
    assert woken(store, [execution_id], now=1002.0) == []  # a paused execution claims nothing
    assert shown(store, execution_id) == {"fetch": "the execution to be resumed"}
    assert store.set_paused(execution_id, False, now=1003.0) == []  # no job to re-send yet
    assert woken(store, [execution_id], now=1004.0) == [
        Dispatch(execution_id, "fetch", 1, QUEUE, None, 7)
    ]
    assert woken(store, [execution_id], now=1005.0) == []


def test_a_cancelled_execution_s_deferred_node_is_never_woken(store: Store) -> None:
    execution_id = started(store, limited(store))
    assert store.defer_start(execution_id, "fetch", 1, None, 1001.0, RATE, now=1000.0)
    store.cancel(execution_id, now=1000.5)
    assert woken(store, [execution_id], now=1002.0) == []
    assert jobs(execution_id) == []
    assert node(execution_id).status == "cancelled"
    assert shown(store, execution_id) == {}


def test_a_deferred_foreach_item_is_woken_alone_with_the_node_s_priority(store: Store) -> None:
    version_id = limited(store, foreach=[1, 2, 3], max_parallel=3)
    execution_id = started(store, version_id)
    claim = claim_one(store, execution_id, "fetch", 1, "w", now=1000.0)
    assert claim is not None
    fanout = complete_one(store, claim, Report("fanout", output=[1, 2, 3]), now=1000.1)
    assert sorted(d.item for d in fanout if d.item is not None) == [0, 1, 2]
    assert store.defer_start(execution_id, "fetch", 1, 1, 1002.0, RATE, now=1000.2)
    item = NodeItem.get(
        (NodeItem.execution_id == execution_id)
        & (NodeItem.node_id == "fetch")
        & (NodeItem.item_index == 1)
    )
    assert (item.status, item.due_at) == ("queued", 1002.0)
    assert sorted(i for _, _, i in jobs(execution_id) if i is not None) == [0, 2]
    assert deferrals(execution_id) == [{"attempt": 1, "reason": RATE, "until": 1002.0, "item": 1}]
    assert shown(store, execution_id)["fetch"].endswith(f"; {RATE} until {iso(1002.0)}")
    assert woken(store, [execution_id], now=1001.9) == []
    assert woken(store, [execution_id], now=1002.0) == [
        Dispatch(execution_id, "fetch", 1, QUEUE, 1, 7)
    ]
    assert woken(store, [execution_id], now=1002.0) == []
    for index in (0, 1, 2):
        claimed = store.claim_item(execution_id, "fetch", 1, index, "w", now=1003.0)
        assert claimed is not None, index
        store.complete_item(claimed, Report("succeeded"), now=1004.0)
    assert Execution.get_by_id(execution_id).status == "succeeded"


def test_a_deferred_node_claimed_early_then_released_keeps_no_deferral(store: Store) -> None:
    execution_id = started(store, limited(store))
    assert store.defer_start(execution_id, "fetch", 1, None, 1001.0, RATE, now=1000.0)
    # A job sent before the deferral (a duplicate: the limiter had room again) is claimed.
    assert claim_one(store, execution_id, "fetch", 1, "dead", now=1000.5) is not None
    released = store.release_worker("dead", now=1000.6)
    assert [d.node_id for d in released if d.execution_id == execution_id] == ["fetch"]
    assert jobs(execution_id) == [("fetch", 1, None)]
    assert shown(store, execution_id) == {"fetch": f"a free worker on queue {QUEUE}"}
    assert woken(store, [execution_id], now=1001.0) == []
    assert jobs(execution_id) == [("fetch", 1, None)]
