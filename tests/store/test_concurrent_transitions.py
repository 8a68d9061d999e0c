"""Transitions that race: operators and workers acting on one execution at the same moment,
each on a connection of its own, on SQLite and on PostgreSQL. The lock order of tx.py (the
execution row first) is what keeps these from deadlocking or counting twice."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from store_steps import claim_one, complete_one

from spane_cli.errors import OperationFailed
from spane_cli.states import TERMINAL_NODE, ExecutionStatus
from spane_cli.store.db import open_database
from spane_cli.store.migrations import migrate
from spane_cli.store.models import Execution, NodeRun, Outbox
from spane_cli.store.records import ClaimedNode, Report
from spane_cli.store.store import Store
from spane_cli.store.versions import register_version


def version(store: Store, nodes: dict[str, Any], name: str) -> int:
    data = {"version": 1, "name": name, "nodes": nodes}
    return int(register_version(store.database, name, data, {}).id)


def at_once(*actions: Callable[[], Any]) -> list[Any]:
    """Run the actions in threads released together; their results, or the exceptions."""
    barrier = threading.Barrier(len(actions))
    results: list[Any] = [None] * len(actions)

    def run(index: int) -> None:
        barrier.wait()
        try:
            results[index] = actions[index]()
        except Exception as exc:  # collected: the test asserts on what each caller saw
            results[index] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(actions))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "a caller never returned"
    return results


def drive(store: Store, execution_id: str, report: Report) -> None:
    """Claim and complete every queued node until none is left."""
    while True:
        rows = list(Outbox.select().where(Outbox.execution_id == execution_id))
        if not rows:
            return
        for row in rows:
            claim = claim_one(store, execution_id, row.node_id, row.attempt, "w")
            if claim is not None:
                complete_one(store, claim, report)


def complete_all(store: Store, claims: list[ClaimedNode | None]) -> None:
    for claim in claims:
        assert claim is not None
        complete_one(store, claim, Report("succeeded"))


def test_two_concurrent_retries_reopen_once(store: Store) -> None:
    for round_number in range(5):
        nodes = {"a": {"type": "noop"}, "b": {"type": "noop", "needs": ["a"]}}
        execution_id, _, _ = store.create_execution(version(store, nodes, "retry"), {})
        drive(store, execution_id, Report("failed", error="down"))
        assert Execution.get_by_id(execution_id).status == ExecutionStatus.FAILED

        retry = partial(store.retry_execution, execution_id)
        results = at_once(retry, retry)
        refused = [r for r in results if isinstance(r, OperationFailed)]
        reopened = [r for r in results if isinstance(r, list)]
        assert (len(reopened), len(refused)) == (1, 1), (round_number, results)

        drive(store, execution_id, Report("succeeded"))
        execution = Execution.get_by_id(execution_id)
        assert (execution.status, execution.remaining_nodes) == (ExecutionStatus.SUCCEEDED, 0)


def test_cancel_while_workers_complete_nodes_never_deadlocks(store: Store) -> None:
    width = 30
    nodes: dict[str, Any] = {"root": {"type": "noop"}}
    nodes.update({f"c{i}": {"type": "noop", "needs": ["root"]} for i in range(width)})
    nodes["join"] = {"type": "noop", "needs": [f"c{i}" for i in range(width)]}
    version_id = version(store, nodes, "fan")
    for _ in range(8):
        execution_id, _, _ = store.create_execution(version_id, {})
        root = claim_one(store, execution_id, "root", 1, "w")
        assert root is not None
        complete_one(store, root, Report("succeeded"))
        claims = [claim_one(store, execution_id, f"c{i}", 1, "w") for i in range(width)]

        results = at_once(
            partial(complete_all, store, claims[0::2]),
            partial(complete_all, store, claims[1::2]),
            partial(store.cancel, execution_id),
        )
        assert not [r for r in results if isinstance(r, Exception)], results
        execution = Execution.get_by_id(execution_id)
        left_open = [
            row.node_id
            for row in NodeRun.select().where(NodeRun.execution == execution_id)
            if row.status not in TERMINAL_NODE
        ]
        assert execution.status == ExecutionStatus.CANCELLED and left_open == []


def test_a_completion_the_server_aborts_for_a_deadlock_runs_again(postgres_url: str) -> None:
    """Another client takes the node's row, then (while our completion waits for it) the
    execution's row: PostgreSQL breaks the deadlock by aborting our transaction, and the
    store runs it again instead of failing the worker's report."""
    import psycopg2

    database = open_database(postgres_url)
    migrate(database)
    store = Store(database)
    execution_id, _, _ = store.create_execution(version(store, {"a": {"type": "noop"}}, "dl"), {})
    claim = claim_one(store, execution_id, "a", 1, "w")
    assert claim is not None
    other = psycopg2.connect(postgres_url)
    try:
        cursor = other.cursor()
        # Our side waits longer than the store's (1 s by default) before it checks, so the
        # server breaks the circle by aborting the store's transaction.
        cursor.execute("SET deadlock_timeout = '20s'")
        cursor.execute(
            "SELECT 1 FROM node_run WHERE execution_id = %s AND node_id = 'a' FOR UPDATE",
            (execution_id,),
        )
        results = []
        completing = threading.Thread(
            target=lambda: results.append(complete_one(store, claim, Report("succeeded")))
        )
        completing.start()
        poll_until_waiting_on_a_lock(postgres_url)
        # Our completion holds the execution row and waits for the node's: close the circle.
        cursor.execute("SELECT 1 FROM execution WHERE id = %s FOR UPDATE", (execution_id,))
        other.commit()
        completing.join(timeout=30)
        assert results == [[]], "the completion did not go through"
    finally:
        other.close()
    assert NodeRun.get(NodeRun.execution == execution_id).status == "succeeded"
    assert Execution.get_by_id(execution_id).status == ExecutionStatus.SUCCEEDED
    database.close()


def poll_until_waiting_on_a_lock(postgres_url: str) -> None:
    import psycopg2

    watcher = psycopg2.connect(postgres_url)
    watcher.autocommit = True  # a fresh view of pg_stat_activity on every poll
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with watcher.cursor() as cursor:
                cursor.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                    " AND datname = current_database()"
                )
                if cursor.fetchone()[0]:
                    return
        raise AssertionError("the completion never waited for the node's row")
    finally:
        watcher.close()
