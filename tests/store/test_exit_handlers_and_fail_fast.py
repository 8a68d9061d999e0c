"""Exit handlers, fail_fast and retry.when through the store's guarded transitions, on SQLite
and on PostgreSQL: an exit handler is queued once, only after the last node of the main graph
has ended, however the reports arrive."""

from __future__ import annotations

from typing import Any

from store_steps import claim_one, complete_one

from spane_cli.states import ExecutionStatus
from spane_cli.store.models import DeadLetter, Event, NodeRun, Outbox
from spane_cli.store.records import Report
from spane_cli.store.store import Store
from spane_cli.store.versions import register_version


def version(store: Store, nodes: dict[str, Any], **extra: Any) -> int:
    data = {"version": 1, "name": "wf", "nodes": nodes, **extra}
    return int(register_version(store.database, "wf", data, {}).id)


def statuses(store: Store, execution_id: str) -> dict[str, str]:
    rows = NodeRun.select().where(NodeRun.execution == execution_id)
    return {row.node_id: row.status for row in rows}


def outbox(execution_id: str) -> list[str]:
    rows = Outbox.select().where(Outbox.execution_id == execution_id)
    return sorted(row.node_id for row in rows)


EXIT = {"type": "noop", "on_exit": True}


def test_an_exit_handler_is_queued_once_after_the_last_main_node(store: Store) -> None:
    vid = version(
        store,
        {
            "a": {"type": "noop"},
            "b": {"type": "noop"},
            "c": {"type": "noop", "needs": ["a"]},
            "x": EXIT,
            "y": {**EXIT, "needs": ["x"]},
        },
    )
    execution_id, _, dispatches = store.create_execution(vid, None)
    assert sorted(d.node_id for d in dispatches) == ["a", "b"]
    a = claim_one(store, execution_id, "a", 1, "w1")
    b = claim_one(store, execution_id, "b", 1, "w2")
    assert a is not None and b is not None
    assert [d.node_id for d in complete_one(store, a, Report("succeeded", output=1))] == ["c"]
    # b is still running: the exit handler waits.
    c = claim_one(store, execution_id, "c", 1, "w1")
    assert c is not None
    assert complete_one(store, c, Report("succeeded", output=3)) == []
    assert statuses(store, execution_id)["x"] == "pending"
    assert [d.node_id for d in complete_one(store, b, Report("failed", error="bad"))] == ["x"]
    # The same report again (a duplicate delivery) queues nothing more.
    assert complete_one(store, b, Report("failed", error="bad")) == []
    x = claim_one(store, execution_id, "x", 1, "w1")
    assert x is not None
    assert x.parent_outputs == {"a": 1, "b": None, "c": 3}
    assert claim_one(store, execution_id, "x", 1, "w2") is None
    assert [d.node_id for d in complete_one(store, x, Report("succeeded"))] == ["y"]
    assert store.require_execution(execution_id).status == ExecutionStatus.RUNNING
    y = claim_one(store, execution_id, "y", 1, "w1")
    assert y is not None
    complete_one(store, y, Report("succeeded"))
    execution = store.require_execution(execution_id)
    assert execution.status == ExecutionStatus.FAILED
    assert execution.error == "node 'b' failed: bad"
    queued = Event.select().where(
        (Event.execution_id == execution_id)
        & (Event.node_id == "x")
        & (Event.type == "node.queued")
    )
    assert queued.count() == 1


def test_a_failed_exit_handler_fails_the_execution_without_hiding_the_main_result(
    store: Store,
) -> None:
    vid = version(store, {"a": {"type": "noop"}, "x": EXIT})
    execution_id, _, _ = store.create_execution(vid, None)
    a = claim_one(store, execution_id, "a", 1, "w")
    assert a is not None
    complete_one(store, a, Report("succeeded"))
    x = claim_one(store, execution_id, "x", 1, "w")
    assert x is not None
    complete_one(store, x, Report("failed", error="hook down"))
    execution = store.require_execution(execution_id)
    assert execution.status == ExecutionStatus.FAILED
    assert execution.error == "exit handler 'x' failed: hook down"
    letters = DeadLetter.select().where(DeadLetter.execution_id == execution_id)
    assert [letter.node_id for letter in letters] == ["x"]


def test_fail_fast_skips_what_has_not_started_and_waits_for_what_runs(store: Store) -> None:
    vid = version(
        store,
        {
            "running": {"type": "noop"},
            "breaks": {"type": "noop"},
            "queued": {"type": "noop"},
            "pending": {"type": "noop", "needs": ["running"]},
            "x": EXIT,
        },
        fail_fast=True,
    )
    execution_id, _, _ = store.create_execution(vid, None)
    running = claim_one(store, execution_id, "running", 1, "w1")
    breaks = claim_one(store, execution_id, "breaks", 1, "w2")
    assert running is not None and breaks is not None
    assert complete_one(store, breaks, Report("failed", error="boom")) == []
    assert statuses(store, execution_id) == {
        "running": "running",
        "breaks": "failed",
        "queued": "skipped",
        "pending": "skipped",
        "x": "pending",
    }
    assert outbox(execution_id) == []
    # The job of the node that never started changes nothing when it arrives.
    assert claim_one(store, execution_id, "queued", 1, "w3") is None
    assert [d.node_id for d in complete_one(store, running, Report("succeeded"))] == ["x"]
    x = claim_one(store, execution_id, "x", 1, "w1")
    assert x is not None
    complete_one(store, x, Report("succeeded"))
    execution = store.require_execution(execution_id)
    assert execution.status == ExecutionStatus.FAILED
    assert execution.error == "node 'breaks' failed: boom"
    skipped = Event.select().where(
        (Event.execution_id == execution_id) & (Event.type == "node.skipped")
    )
    assert sorted(event.node_id for event in skipped) == ["pending", "queued"]


def test_fail_fast_ignores_failures_that_continue(store: Store) -> None:
    vid = version(
        store,
        {
            "soft": {"type": "noop", "continue_on_fail": True},
            "other": {"type": "noop"},
        },
        fail_fast=True,
    )
    execution_id, _, _ = store.create_execution(vid, None)
    soft = claim_one(store, execution_id, "soft", 1, "w")
    assert soft is not None
    complete_one(store, soft, Report("failed", error="meh"))
    assert statuses(store, execution_id)["other"] == "queued"


def test_retry_when_decides_per_failure(store: Store) -> None:
    retry = {"attempts": 5, "when": "exit_code == 75 or status == 503"}
    vid = version(
        store,
        {"cmd": {"type": "noop", "retry": retry}, "web": {"type": "noop", "retry": retry}},
    )
    execution_id, _, _ = store.create_execution(vid, None)
    cmd = claim_one(store, execution_id, "cmd", 1, "w")
    web = claim_one(store, execution_id, "web", 1, "w")
    assert cmd is not None and web is not None
    again = complete_one(store, cmd, Report("failed", error="exit code 75", exit_code=75))
    assert [(d.node_id, d.attempt) for d in again] == [("cmd", 2)]
    cmd = claim_one(store, execution_id, "cmd", 2, "w")
    assert cmd is not None
    assert complete_one(store, cmd, Report("failed", error="exit code 2", exit_code=2)) == []
    again = complete_one(store, web, Report("failed", error="HTTP 503", http_status=503))
    assert [(d.node_id, d.attempt) for d in again] == [("web", 2)]
    web = claim_one(store, execution_id, "web", 2, "w")
    assert web is not None
    complete_one(store, web, Report("failed", error="HTTP 404", http_status=404))
    assert statuses(store, execution_id) == {"cmd": "failed", "web": "failed"}
    letters = DeadLetter.select().where(DeadLetter.execution_id == execution_id)
    assert sorted((letter.node_id, letter.attempts) for letter in letters) == [
        ("cmd", 2),
        ("web", 2),
    ]


def test_retry_runs_the_exit_handlers_again_after_the_main_graph(store: Store) -> None:
    vid = version(
        store,
        {"a": {"type": "noop"}, "b": {"type": "noop", "needs": ["a"]}, "x": EXIT},
    )
    execution_id, _, _ = store.create_execution(vid, None)
    a = claim_one(store, execution_id, "a", 1, "w")
    assert a is not None
    assert [d.node_id for d in complete_one(store, a, Report("failed", error="once"))] == ["x"]
    x = claim_one(store, execution_id, "x", 1, "w")
    assert x is not None
    complete_one(store, x, Report("failed", error="hook down"))
    assert store.require_execution(execution_id).status == ExecutionStatus.FAILED

    # Both the main node and the exit handler failed: the main node runs first, alone.
    dispatches = store.retry_execution(execution_id)
    assert [(d.node_id, d.attempt) for d in dispatches] == [("a", 2)]
    assert statuses(store, execution_id) == {"a": "queued", "b": "pending", "x": "pending"}
    a = claim_one(store, execution_id, "a", 2, "w")
    assert a is not None
    assert [d.node_id for d in complete_one(store, a, Report("succeeded"))] == ["b"]
    b = claim_one(store, execution_id, "b", 1, "w")
    assert b is not None
    assert [d.node_id for d in complete_one(store, b, Report("succeeded"))] == ["x"]
    x = claim_one(store, execution_id, "x", 1, "w")
    assert x is not None
    complete_one(store, x, Report("succeeded"))
    assert store.require_execution(execution_id).status == ExecutionStatus.SUCCEEDED


def test_retry_of_a_fail_fast_execution_starts_what_fail_fast_skipped(store: Store) -> None:
    vid = version(
        store,
        {
            "a": {"type": "noop"},
            "b": {"type": "noop"},
            "c": {"type": "noop", "needs": ["b"]},
            "d": {"type": "noop", "needs": ["a"]},
            "when_false": {"type": "noop"},
            "x": EXIT,
        },
        fail_fast=True,
    )
    execution_id, _, _ = store.create_execution(vid, None)
    skipped_by_when = claim_one(store, execution_id, "when_false", 1, "w")
    a = claim_one(store, execution_id, "a", 1, "w")
    assert a is not None and skipped_by_when is not None
    complete_one(store, skipped_by_when, Report("skipped"))
    assert [d.node_id for d in complete_one(store, a, Report("failed", error="e"))] == ["x"]
    x = claim_one(store, execution_id, "x", 1, "w")
    assert x is not None
    complete_one(store, x, Report("succeeded"))
    assert statuses(store, execution_id) == {
        "a": "failed",
        "b": "skipped",
        "c": "skipped",
        "d": "skipped",
        "when_false": "skipped",
        "x": "succeeded",
    }
    dispatches = store.retry_execution(execution_id)
    assert sorted(d.node_id for d in dispatches) == ["a", "b"]
    assert statuses(store, execution_id) == {
        "a": "queued",
        "b": "queued",
        "c": "pending",
        "d": "pending",
        "when_false": "skipped",
        "x": "pending",
    }
    for node_id in ("a", "b", "c", "d", "x"):
        claim = claim_one(store, execution_id, node_id, 2 if node_id == "a" else 1, "w")
        assert claim is not None, node_id
        complete_one(store, claim, Report("succeeded"))
    assert store.require_execution(execution_id).status == ExecutionStatus.SUCCEEDED


def test_a_replay_while_running_makes_the_exit_handler_wait_for_the_replayed_node(
    store: Store,
) -> None:
    vid = version(store, {"a": {"type": "noop"}, "b": {"type": "noop"}, "x": EXIT})
    execution_id, _, _ = store.create_execution(vid, None)
    a = claim_one(store, execution_id, "a", 1, "w")
    b = claim_one(store, execution_id, "b", 1, "w")
    assert a is not None and b is not None
    complete_one(store, a, Report("failed", error="once"))
    letter = DeadLetter.get(DeadLetter.execution_id == execution_id)
    assert [(d.node_id, d.attempt) for d in store.replay_dead_letter(int(letter.id))] == [("a", 2)]
    # b ends while the replayed a is queued: the exit handler keeps waiting for a.
    assert complete_one(store, b, Report("succeeded")) == []
    assert statuses(store, execution_id)["x"] == "pending"
    a = claim_one(store, execution_id, "a", 2, "w")
    assert a is not None
    assert [d.node_id for d in complete_one(store, a, Report("succeeded"))] == ["x"]
