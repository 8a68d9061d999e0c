"""`spane gc` in the store: finished executions older than the cutoff go with every row
recorded about them; open ones and newer ones stay, on SQLite and PostgreSQL alike."""

from __future__ import annotations

from typing import Any

from test_store_contract import run_all, version

from spane_cli.store.models import DeadLetter, Event, Execution, NodeLog, NodeRun
from spane_cli.store.records import Report
from spane_cli.store.retention import Selection
from spane_cli.store.store import Store

FLOW: dict[str, Any] = {"a": {"type": "noop"}, "b": {"type": "noop", "needs": ["a"]}}


def rows_of(execution_id: str) -> dict[str, int]:
    return {
        "nodes": NodeRun.select().where(NodeRun.execution == execution_id).count(),
        "events": Event.select().where(Event.execution_id == execution_id).count(),
        "logs": NodeLog.select().where(NodeLog.execution_id == execution_id).count(),
        "letters": DeadLetter.select().where(DeadLetter.execution_id == execution_id).count(),
    }


def test_gc_deletes_old_finished_executions_and_keeps_the_rest(store: Store) -> None:
    vid = version(store, FLOW, name="kept-or-not")
    old_ok, _, _ = store.create_execution(vid, None, now=1000.0)
    run_all(store, old_ok)
    old_failed, _, _ = store.create_execution(vid, None, now=1001.0)
    run_all(store, old_failed, {"a": Report("failed", error="boom", logs="line\n")})
    old_open, _, _ = store.create_execution(vid, None, now=1002.0)  # never run: still open
    new_ok, _, _ = store.create_execution(vid, None, now=5000.0)
    run_all(store, new_ok)
    assert rows_of(old_failed)["letters"] == 1 and rows_of(old_failed)["logs"] == 1

    selection = Selection(created_before=2000.0)
    would = store.gc_count(selection)
    assert would["execution"] >= 2 and would["dead_letter"] >= 1 and would["node_log"] >= 1
    deleted = store.gc_batch(selection)
    assert deleted["execution"] == would["execution"]
    assert deleted["node_run"] == would["node_run"]
    assert store.gc_batch(selection)["execution"] == 0  # nothing left to do

    remaining = {row.id for row in Execution.select()}
    assert old_ok not in remaining and old_failed not in remaining
    assert {old_open, new_ok} <= remaining
    for gone in (old_ok, old_failed):
        assert rows_of(gone) == {"nodes": 0, "events": 0, "logs": 0, "letters": 0}
    assert rows_of(old_open)["nodes"] == 2 and rows_of(new_ok)["nodes"] == 2


def test_gc_selects_by_status_and_workflow(store: Store) -> None:
    first = version(store, FLOW, name="first")
    second = version(store, FLOW, name="second")
    ok, _, _ = store.create_execution(first, None, now=1000.0)
    run_all(store, ok)
    failed, _, _ = store.create_execution(first, None, now=1000.0)
    run_all(store, failed, {"a": Report("failed", error="boom")})
    other, _, _ = store.create_execution(second, None, now=1000.0)
    run_all(store, other)
    mine = {ok, failed, other}

    def left() -> set[str]:  # the database may hold other tests' executions
        return {row.id for row in Execution.select()} & mine

    store.gc_batch(Selection(2000.0, frozenset({"failed"}), "first"))
    assert left() == {ok, other}
    store.gc_batch(Selection(2000.0, workflow="second"))
    assert left() == {ok}
    store.gc_batch(Selection(2000.0, frozenset({"running"})))  # never an open status
    assert left() == {ok}


def test_gc_racing_a_retry_leaves_the_execution_whole_or_wholly_gone(store: Store) -> None:
    import contextlib
    import threading

    from spane_cli.errors import SpaneError

    vid = version(store, FLOW, name="gc-race")
    for _ in range(5):
        failed, _, _ = store.create_execution(vid, None, now=1000.0)
        run_all(store, failed, {"a": Report("failed", error="boom")})
        other = Store(store.database)  # a second operator: its own caches
        start = threading.Barrier(2)

        def collect(start: threading.Barrier = start) -> None:
            start.wait()
            store.gc_batch(Selection(2000.0, workflow="gc-race"))

        def retry(
            start: threading.Barrier = start, target: str = failed, other: Store = other
        ) -> None:
            start.wait()
            # Deleted first: not found, or not failed any more; anything else is a bug.
            with contextlib.suppress(SpaneError):
                other.retry_execution(target)

        threads = [threading.Thread(target=collect), threading.Thread(target=retry)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        kept = Execution.get_or_none(Execution.id == failed)
        rows = rows_of(failed)
        if kept is None:
            assert rows == {"nodes": 0, "events": 0, "logs": 0, "letters": 0}
        else:  # the retry reopened it first: gc left it alone, every node row is there
            assert kept.status == "running" and rows["nodes"] == 2
