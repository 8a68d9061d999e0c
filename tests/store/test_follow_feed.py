"""Following executions: one statement reads the new rows of every followed execution, each
after its own cursor, with their statuses; the process's reader hands each follower every
row after its cursor once, in order, and ends it with the execution."""

from __future__ import annotations

import threading
from typing import Any

from store_steps import claim_one, complete_one

from spane_cli.engine.feeds import EVENTS, LOGS, FeedPoller
from spane_cli.store import queries
from spane_cli.store.models import Event
from spane_cli.store.records import Report
from spane_cli.store.store import Store
from spane_cli.store.versions import register_version


def start(store: Store, name: str) -> str:
    data = {"version": 1, "name": name, "nodes": {"a": {"type": "noop"}, "b": {"type": "noop"}}}
    version_id = int(register_version(store.database, name, data, {}).id)
    execution_id, _, _ = store.create_execution(version_id, {})
    return execution_id


def finish(store: Store, execution_id: str) -> None:
    for node_id in ("a", "b"):
        claim = claim_one(store, execution_id, node_id, 1, "w")
        assert claim is not None
        complete_one(store, claim, Report("succeeded", logs=f"{node_id} says hi\n"))


def event_ids(execution_id: str) -> list[int]:
    rows = Event.select(Event.id).where(Event.execution_id == execution_id).order_by(Event.id)
    return [int(row.id) for row in rows]


def test_one_statement_reads_each_execution_after_its_own_cursor(store: Store) -> None:
    first, second = start(store, "follow-one"), start(store, "follow-two")
    finish(store, first)
    first_ids, second_ids = event_ids(first), event_ids(second)

    batch = queries.follow_batch("event", {first: first_ids[1], second: 0})

    assert [r.id for r in batch.rows if r.execution_id == first] == first_ids[2:]
    assert [r.id for r in batch.rows if r.execution_id == second] == second_ids
    assert batch.statuses == {first: "succeeded", second: "pending"}
    assert batch.complete
    assert batch.rows[0].type  # whole rows, as the views show them


def test_an_execution_with_nothing_new_still_reports_its_status(store: Store) -> None:
    execution_id = start(store, "follow-quiet")
    newest = event_ids(execution_id)[-1]
    batch = queries.follow_batch("event", {execution_id: newest}, limit=1)
    assert batch.rows == [] and batch.statuses == {execution_id: "pending"}


def test_a_read_cut_at_its_limit_says_so(store: Store) -> None:
    execution_id = start(store, "follow-cut")
    batch = queries.follow_batch("event", {execution_id: 0}, limit=2)
    assert len(batch.rows) == 2 and not batch.complete


class Collected:
    def __init__(self) -> None:
        self.rows: list[Any] = []
        self.ended = threading.Event()

    def __call__(self, rows: Any, ended: bool) -> None:
        self.rows.extend(rows)
        if ended:
            self.ended.set()


def test_many_followers_cost_one_query_per_look(store: Store) -> None:
    execution_id = start(store, "follow-many")
    poller = FeedPoller(background=False)  # looks only when the test asks
    followers = [Collected() for _ in range(50)]
    for index, collected in enumerate(followers):
        # Each resumes from another place: the first after nothing, the others after the
        # first event.
        after = 0 if index == 0 else event_ids(execution_id)[0]
        poller.follow(EVENTS, execution_id, after, collected)

    poller.poll()
    finish(store, execution_id)
    poller.poll()  # the rest, and the end: every follower is done
    poller.poll()  # nobody left to read for

    assert poller.stats.queries == poller.stats.polls == 2
    everything = event_ids(execution_id)
    assert [r.id for r in followers[0].rows] == everything
    for collected in followers[1:]:
        assert [r.id for r in collected.rows] == everything[1:]
        assert collected.ended.is_set()
    assert poller.counts() == (0, 0)


def test_log_followers_of_one_node_get_only_its_lines(store: Store) -> None:
    execution_id = start(store, "follow-logs")
    poller = FeedPoller(background=False)
    only_b, every_node = Collected(), Collected()
    poller.follow(LOGS, execution_id, 0, only_b, node_id="b")
    poller.follow(LOGS, execution_id, 0, every_node)
    finish(store, execution_id)
    poller.poll()
    assert ["".join(r.text for r in every_node.rows)] == ["a says hi\nb says hi\n"]
    assert [r.text for r in only_b.rows] == ["b says hi\n"]
    assert only_b.ended.is_set() and every_node.ended.is_set()


def test_on_postgres_rows_wait_to_settle_before_they_are_handed_out(store: Store) -> None:
    execution_id = start(store, "follow-settle")
    poller = FeedPoller(background=False, settle=5.0)
    collected = Collected()
    poller.follow(EVENTS, execution_id, 0, collected)
    finish(store, execution_id)

    poller.poll(now=100.0)
    assert collected.rows == []  # seen once, not yet settled
    poller.poll(now=106.0)
    assert [r.id for r in collected.rows] == event_ids(execution_id)
    assert not collected.ended.is_set()  # seen ended only now
    poller.poll(now=112.0)
    assert collected.ended.is_set()
