"""The reconciler's tick, driven with explicit times: no sleeping, no worker processes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from cluster_support import fresh_postgres_url
from redis import Redis
from store_steps import claim_one, complete_one

from spane_cli.engine import reconcile
from spane_cli.engine.dispatch import Dispatcher, job_id
from spane_cli.store.db import open_database
from spane_cli.store.migrations import migrate
from spane_cli.store.models import Event, NodeRun, Outbox
from spane_cli.store.records import Dispatch, Report
from spane_cli.store.store import Store
from spane_cli.store.versions import register_version
from spane_cli.store.workers import HEARTBEAT_TTL_SECONDS, beat

__all__ = ["fresh_postgres_url"]


@pytest.fixture
def store(postgres_url: str) -> Iterator[Store]:
    database = open_database(postgres_url)
    migrate(database)
    yield Store(database)
    database.close()


@pytest.fixture
def dispatcher(redis_url: str) -> Dispatcher:
    return Dispatcher(Redis.from_url(redis_url))


def single_node(store: Store, name: str) -> int:
    data = {"version": 1, "name": name, "nodes": {"a": {"type": "noop"}}}
    return int(register_version(store.database, name, data, {}).id)


def queued_ids(dispatcher: Dispatcher) -> list[str]:
    return [raw.decode() for raw in dispatcher.connection.lrange("rq:queue:default", 0, -1)]


def test_a_job_lost_with_redis_is_sent_again_after_the_grace_period(
    store: Store, dispatcher: Dispatcher
) -> None:
    execution_id, _, dispatches = store.create_execution(
        single_node(store, "lost-job"), None, now=1000.0
    )
    dispatcher.enqueue(dispatches)
    dispatcher.connection.flushdb()  # Redis restarted empty
    early = reconcile.tick(store, dispatcher, now=1001.0)  # still within the grace period
    assert execution_id not in {d.execution_id for d in early}
    sent = reconcile.tick(store, dispatcher, now=1000.0 + reconcile.DISPATCH_GRACE_SECONDS + 0.1)
    again = [d for d in sent if d.execution_id == execution_id]
    assert [(d.node_id, d.attempt) for d in again] == [("a", 1)]
    assert job_id(again[0]) in queued_ids(dispatcher)


def test_a_present_job_is_left_alone_until_the_resend_age(
    store: Store, dispatcher: Dispatcher
) -> None:
    execution_id, _, dispatches = store.create_execution(
        single_node(store, "present"), None, now=2000.0
    )
    dispatcher.enqueue(dispatches)

    def mine(now: float) -> list[str]:
        sent = reconcile.tick(store, dispatcher, now=now)
        return [d.node_id for d in sent if d.execution_id == execution_id]

    assert mine(2005.0) == []
    # Still waiting in its queue (a backlog): not sent twice.
    assert mine(2000.0 + reconcile.RESEND_AFTER_SECONDS + 1) == []
    # Its id left the queue with a worker that died before claiming it: the hash is still
    # there, the queue is empty, so it is sent again.
    dispatcher.connection.delete("rq:queue:default")
    assert mine(2000.0 + reconcile.RESEND_AFTER_SECONDS + 2) == ["a"]


def test_a_backlog_is_resent_anyway_after_the_longer_limit(
    store: Store, dispatcher: Dispatcher
) -> None:
    execution_id, _, dispatches = store.create_execution(
        single_node(store, "backlog"), None, now=4000.0
    )
    dispatcher.enqueue(dispatches)
    sent = reconcile.tick(store, dispatcher, now=4000.0 + reconcile.RESEND_ANYWAY_AFTER_SECONDS + 1)
    assert [d.node_id for d in sent if d.execution_id == execution_id] == ["a"]


def test_one_lost_job_behind_a_present_sample_is_found_once_it_is_among_the_oldest(
    fresh_postgres_url: str, dispatcher: Dispatcher
) -> None:
    database = open_database(fresh_postgres_url)  # no other test's outbox rows
    migrate(database)
    store = Store(database)
    sample = reconcile.LOST_CHECK_SAMPLE
    vid = single_node(store, "deep")
    created = [store.create_execution(vid, None, now=5000.0 + i) for i in range(sample + 1)]
    for _, _, dispatches in created:
        dispatcher.enqueue(dispatches)
    last_id, _, last = created[-1]
    dispatcher.connection.delete(f"rq:job:{job_id(last[0])}")  # lost behind the sample
    later = 5000.0 + sample + reconcile.DISPATCH_GRACE_SECONDS + 1
    assert last_id not in {d.execution_id for d in reconcile.tick(store, dispatcher, now=later)}
    first_id, _, _ = created[0]
    claim = claim_one(store, first_id, "a", 1, "w", now=later)  # the oldest row is claimed
    assert claim is not None
    assert [d.execution_id for d in reconcile.tick(store, dispatcher, now=later)] == [last_id]
    database.close()


def test_a_node_of_a_dead_worker_goes_back_without_using_an_attempt(
    store: Store, dispatcher: Dispatcher
) -> None:
    execution_id, _, _ = store.create_execution(single_node(store, "dead"), None, now=3000.0)
    beat("gone-worker", "host", 1, ["default"], now=3000.0)
    assert claim_one(store, execution_id, "a", 1, "gone-worker", now=3000.0) is not None

    def mine(now: float) -> list[Dispatch]:
        sent = reconcile.tick(store, dispatcher, now=now)
        return [d for d in sent if d.execution_id == execution_id]

    assert mine(3000.0 + HEARTBEAT_TTL_SECONDS - 1) == []
    later = 3000.0 + HEARTBEAT_TTL_SECONDS + 1
    recovered = mine(later)
    assert [(d.node_id, d.attempt) for d in recovered] == [("a", 1)]
    row = NodeRun.get(NodeRun.execution == execution_id, NodeRun.node_id == "a")
    assert (row.status, row.attempt, row.lost_count) == ("queued", 1, 1)
    lost_events = Event.select().where(
        (Event.execution_id == execution_id) & (Event.type == "node.lost")
    )
    assert lost_events.count() == 1
    claim = claim_one(store, execution_id, "a", 1, "new-worker", now=later + 1)
    assert claim is not None
    complete_one(store, claim, Report("succeeded"), now=later + 2)
    assert store.require_execution(execution_id).status == "succeeded"


def test_the_third_loss_in_a_row_fails_the_node_with_worker_lost(
    store: Store, dispatcher: Dispatcher
) -> None:
    execution_id, _, _ = store.create_execution(single_node(store, "cursed"), None, now=5000.0)
    now = 5000.0
    for _ in range(3):
        assert claim_one(store, execution_id, "a", 1, "doomed", now=now) is not None
        now += HEARTBEAT_TTL_SECONDS + 1
        reconcile.tick(store, dispatcher, now=now)
    execution = store.require_execution(execution_id)
    assert execution.status == "failed"
    row = NodeRun.get(NodeRun.execution == execution_id, NodeRun.node_id == "a")
    assert row.status == "failed" and row.error.startswith("worker lost")
    assert Outbox.select().where(Outbox.execution_id == execution_id).count() == 0


def test_only_one_worker_reconciles_at_a_time(
    store: Store, dispatcher: Dispatcher, postgres_url: str
) -> None:
    other = open_database(postgres_url)
    other.execute_sql("SELECT pg_advisory_lock(%s)", (reconcile._LOCK_KEY,))
    try:
        execution_id, _, _ = store.create_execution(single_node(store, "locked"), None, now=0.0)
        assert reconcile.tick(store, dispatcher, now=100.0) == []
    finally:
        other.execute_sql("SELECT pg_advisory_unlock(%s)", (reconcile._LOCK_KEY,))
        other.close()
    sent = reconcile.tick(store, dispatcher, now=100.0)
    assert execution_id in {d.execution_id for d in sent}


def test_the_heartbeat_of_a_silent_worker_is_removed_after_a_while(
    store: Store, dispatcher: Dispatcher
) -> None:
    from spane_cli.store.workers import live_workers

    beat("gone~1", "host", 1, ["default"], now=1000.0)
    beat("beating~2", "host", 2, ["default"], now=1000.0)
    kept = reconcile.SILENT_WORKER_KEPT_MIN

    def names(now: float) -> set[str]:
        return {w.name for w in live_workers(now, ttl=10 * kept)}

    reconcile.tick(store, dispatcher, now=1000.0 + kept - 1)
    assert names(1000.0 + kept) == {"gone~1", "beating~2"}  # still shown for a while
    beat("beating~2", "host", 2, ["default"], now=1000.0 + kept)
    reconcile.tick(store, dispatcher, now=1000.0 + kept + 1)
    assert names(1000.0 + kept + 1) == {"beating~2"}
