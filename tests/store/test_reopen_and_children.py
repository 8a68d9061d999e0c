"""Reopening gives an execution a fresh deadline; a sub-workflow that ends in any way settles
the node of its parent that waits for it."""

from __future__ import annotations

from typing import Any

from store_steps import claim_one, complete_one

from spane_cli.states import ExecutionStatus, NodeStatus
from spane_cli.store.models import Execution, NodeRun
from spane_cli.store.records import Report
from spane_cli.store.store import Store
from spane_cli.store.versions import register_version


def version(store: Store, name: str, nodes: dict[str, Any], **extra: Any) -> int:
    data = {"version": 1, "name": name, "nodes": nodes, **extra.pop("data", {})}
    return int(register_version(store.database, name, data, extra.pop("refs", {})).id)


def node(execution_id: str, node_id: str) -> NodeRun:
    return NodeRun.get((NodeRun.execution == execution_id) & (NodeRun.node_id == node_id))


def test_a_retry_after_the_deadline_passed_gets_a_fresh_one(store: Store) -> None:
    version_id = version(store, "late", {"a": {"type": "noop"}}, data={"timeout": "10s"})
    execution_id, _, _ = store.create_execution(version_id, {}, now=1000.0)
    claim = claim_one(store, execution_id, "a", 1, "w", now=1001.0)
    assert claim is not None and claim.timeout_at == 1010.0
    complete_one(store, claim, Report("failed", error="down"), now=1002.0)
    assert Execution.get_by_id(execution_id).status == ExecutionStatus.FAILED

    store.retry_execution(execution_id, now=5000.0)
    assert store.expire_timeouts(now=5005.0) == []
    again = claim_one(store, execution_id, "a", 2, "w", now=5001.0)
    assert again is not None and again.timeout_at == 5010.0
    complete_one(store, again, Report("succeeded"), now=5002.0)
    assert Execution.get_by_id(execution_id).status == ExecutionStatus.SUCCEEDED


def start_parent(store: Store) -> tuple[str, str]:
    """A parent whose `call` node waits on a child execution: (parent id, child id)."""
    child_version = version(store, "child", {"work": {"type": "noop"}})
    parent_version = version(
        store,
        "parent",
        {"call": {"type": "workflow", "config": {"workflow": "child"}}},
        refs={"child": child_version},
    )
    parent_id, _, _ = store.create_execution(parent_version, {})
    claim = claim_one(store, parent_id, "call", 1, "w")
    assert claim is not None
    complete_one(store, claim, Report("child", child_reference="child", child_input={}))
    child_id = node(parent_id, "call").child_execution_id
    assert child_id is not None
    return parent_id, str(child_id)


def test_a_cancelled_child_fails_the_parent_node(store: Store) -> None:
    parent_id, child_id = start_parent(store)
    assert store.cancel(child_id)
    call = node(parent_id, "call")
    assert call.status == NodeStatus.FAILED and "cancelled" in call.error
    assert Execution.get_by_id(parent_id).status == ExecutionStatus.FAILED


def test_a_timed_out_child_fails_the_parent_node(store: Store) -> None:
    parent_id, child_id = start_parent(store)
    Execution.update(timeout_at=1.0).where(Execution.id == child_id).execute()
    # The database may hold other tests' open executions past their deadline too.
    assert child_id in store.expire_timeouts()
    call = node(parent_id, "call")
    assert call.status == NodeStatus.FAILED and "timed out" in call.error


def test_cancelling_the_parent_cancels_the_child(store: Store) -> None:
    parent_id, child_id = start_parent(store)
    assert store.cancel(parent_id)
    assert Execution.get_by_id(child_id).status == ExecutionStatus.CANCELLED
    assert node(parent_id, "call").status == NodeStatus.CANCELLED


def failed_parent_and_child(store: Store) -> tuple[str, str]:
    """A parent whose `call` node failed because its child's `bad` node failed; the child's
    `ok` node (a side effect) succeeded. (parent id, child id)"""
    child_version = version(store, "two", {"ok": {"type": "noop"}, "bad": {"type": "noop"}})
    parent_version = version(
        store,
        "holder",
        {
            "call": {"type": "workflow", "config": {"workflow": "two"}},
            "after": {"type": "noop", "needs": ["call"]},
        },
        refs={"two": child_version},
    )
    parent_id, _, _ = store.create_execution(parent_version, {})
    claim = claim_one(store, parent_id, "call", 1, "w")
    assert claim is not None
    complete_one(store, claim, Report("child", child_reference="two", child_input={}))
    child_id = str(node(parent_id, "call").child_execution_id)
    for node_id, report in (("ok", Report("succeeded")), ("bad", Report("failed", error="x"))):
        child_claim = claim_one(store, child_id, node_id, 1, "w")
        assert child_claim is not None
        complete_one(store, child_claim, report)
    assert Execution.get_by_id(parent_id).status == ExecutionStatus.FAILED
    assert node(parent_id, "after").status == NodeStatus.UPSTREAM_FAILED
    return parent_id, child_id


def finish_child_and_parent(store: Store, parent_id: str, child_id: str) -> None:
    again = claim_one(store, child_id, "bad", 2, "w")
    assert again is not None
    complete_one(store, again, Report("succeeded", output="fixed"))
    after = claim_one(store, parent_id, "after", 1, "w")
    assert after is not None
    complete_one(store, after, Report("succeeded"))
    assert Execution.get_by_id(child_id).status == ExecutionStatus.SUCCEEDED
    assert Execution.get_by_id(parent_id).status == ExecutionStatus.SUCCEEDED
    assert node(child_id, "ok").attempt == 1  # the side effect that had succeeded ran once


def test_replaying_a_child_dead_letter_wakes_its_parent(store: Store) -> None:
    from spane_cli.store.models import DeadLetter

    parent_id, child_id = failed_parent_and_child(store)
    letter = DeadLetter.get((DeadLetter.execution_id == child_id) & (DeadLetter.node_id == "bad"))
    store.replay_dead_letter(letter.id)
    assert node(parent_id, "call").status == NodeStatus.WAITING
    assert node(parent_id, "after").status == NodeStatus.PENDING
    assert Execution.get_by_id(parent_id).status == ExecutionStatus.RUNNING
    finish_child_and_parent(store, parent_id, child_id)


def test_retrying_the_parent_reopens_its_child_instead_of_starting_another(store: Store) -> None:
    parent_id, child_id = failed_parent_and_child(store)
    dispatches = store.retry_execution(parent_id)
    assert [(d.execution_id, d.node_id) for d in dispatches] == [(child_id, "bad")]
    assert node(parent_id, "call").child_execution_id == child_id
    finish_child_and_parent(store, parent_id, child_id)
    executions = Execution.select().where(
        (Execution.id == child_id) | (Execution.parent_id == parent_id)
    )
    assert len(list(executions)) == 1


def test_a_released_worker_that_comes_back_cannot_complete_its_old_claim(store: Store) -> None:
    execution_id, _, _ = store.create_execution(
        version(store, "lease", {"a": {"type": "noop"}}), {}
    )
    first = claim_one(store, execution_id, "a", 1, "host.1~old-life")
    assert first is not None
    released = store.release_worker("host.1~old-life")
    assert [(d.node_id, d.attempt) for d in released] == [("a", 1)]  # no attempt used
    second = claim_one(store, execution_id, "a", 1, "host.1~new-life")
    assert second is not None
    assert complete_one(store, first, Report("failed", error="zombie")) == []
    assert node(execution_id, "a").status == NodeStatus.RUNNING
    complete_one(store, second, Report("succeeded", output="real"))
    assert node(execution_id, "a").output == "real"


def test_a_stalled_execution_is_decided_again_from_its_snapshot(store: Store) -> None:
    nodes = {
        "a": {"type": "noop"},
        "b": {"type": "noop", "needs": ["a"]},
        "c": {"type": "noop", "needs": ["a"], "trigger": "all_failed"},
    }
    execution_id, _, _ = store.create_execution(version(store, "stall", nodes), {}, now=100.0)
    claim = claim_one(store, execution_id, "a", 1, "w", now=101.0)
    assert claim is not None
    complete_one(store, claim, Report("succeeded"), now=102.0)
    # As if the cascade after `a` had been lost: b back to pending, c never decided.
    NodeRun.update(status="pending", attempt=0, waiting_on=1).where(
        (NodeRun.execution == execution_id) & (NodeRun.node_id.in_(["b", "c"]))
    ).execute()
    Execution.update(remaining_nodes=2).where(Execution.id == execution_id).execute()
    assert store.repair_stalled(quiet_for=30, now=120.0) == []  # not quiet for long enough
    repaired = store.repair_stalled(quiet_for=30, now=200.0)
    assert [(d.node_id, d.attempt) for d in repaired] == [("b", 1)]
    assert node(execution_id, "c").status == NodeStatus.SKIPPED  # all_failed after a success
    again = claim_one(store, execution_id, "b", 1, "w", now=201.0)
    assert again is not None
    complete_one(store, again, Report("succeeded"), now=202.0)
    assert Execution.get_by_id(execution_id).status == ExecutionStatus.SUCCEEDED
