"""Foreach items that wait (a sub-workflow per item, a delay per item), the inputs a child
execution gets, and what an execution's deadline does to the nodes it was running."""

from __future__ import annotations

from typing import Any

from store_steps import claim_one, complete_one

from spane_cli.states import ExecutionStatus, NodeStatus
from spane_cli.store import queries
from spane_cli.store.models import Execution, NodeItem, NodeRun
from spane_cli.store.records import ClaimedNode, Report
from spane_cli.store.store import Store
from spane_cli.store.versions import register_version

CHILD_INPUTS = {
    "n": {"type": "integer", "required": True},
    "tag": {"type": "string", "default": "x"},
}


def version(store: Store, name: str, nodes: dict[str, Any], **extra: Any) -> int:
    data = {"version": 1, "name": name, "nodes": nodes, **extra.pop("data", {})}
    return int(register_version(store.database, name, data, extra.pop("refs", {})).id)


def node(execution_id: str, node_id: str) -> NodeRun:
    return NodeRun.get((NodeRun.execution == execution_id) & (NodeRun.node_id == node_id))


def items(execution_id: str) -> list[NodeItem]:
    return list(
        NodeItem.select().where(NodeItem.execution_id == execution_id).order_by(NodeItem.item_index)
    )


def fan_out(store: Store, nodes: dict[str, Any], values: list[Any], **extra: Any) -> str:
    """An execution whose entry node `each` has started its items; its id."""
    execution_id, _, _ = store.create_execution(version(store, "loop", nodes, **extra), {})
    claim = claim_one(store, execution_id, "each", 1, "w")
    assert claim is not None
    complete_one(store, claim, Report("fanout", output=values))
    return execution_id


def claim_item(store: Store, execution_id: str, index: int, attempt: int = 1) -> ClaimedNode:
    claim = store.claim_item(execution_id, "each", attempt, index, "w")
    assert claim is not None
    return claim


def child_loop(store: Store, max_parallel: int = 1) -> str:
    child = version(store, "child", {"work": {"type": "noop"}}, data={"inputs": CHILD_INPUTS})
    each = {
        "type": "workflow",
        "foreach": [1, 2],
        "max_parallel": max_parallel,
        "config": {"workflow": "child", "input": {"n": "{{ item }}"}},
    }
    return fan_out(store, {"each": each}, [1, 2], refs={"child": child})


def start_child(store: Store, execution_id: str, index: int, value: Any) -> str:
    claim = claim_item(store, execution_id, index)
    report = Report("child", child_reference="child", child_input={"n": value})
    store.complete_item(claim, report)
    row = items(execution_id)[index]
    assert row.status == NodeStatus.WAITING and row.child_execution_id is not None
    return str(row.child_execution_id)


def finish_child(store: Store, child_id: str, report: Report) -> None:
    claim = claim_one(store, child_id, "work", 1, "w")
    assert claim is not None
    complete_one(store, claim, report)


def test_each_item_of_a_workflow_node_waits_for_a_child_of_its_own(store: Store) -> None:
    parent_id = child_loop(store, max_parallel=1)
    first = start_child(store, parent_id, 0, 1)
    child = Execution.get_by_id(first)
    assert (child.parent_id, child.parent_node_id) == (parent_id, "each")
    assert child.input == {"n": 1, "tag": "x"}  # the declared default filled in
    assert items(parent_id)[1].status == "pending"  # max_parallel: 1
    finish_child(store, first, Report("succeeded", output="one"))
    assert items(parent_id)[0].status == NodeStatus.SUCCEEDED
    assert items(parent_id)[1].status == NodeStatus.QUEUED
    second = start_child(store, parent_id, 1, 2)
    finish_child(store, second, Report("succeeded", output="two"))
    each = node(parent_id, "each")
    assert each.status == NodeStatus.SUCCEEDED
    assert each.output == [{"work": "one"}, {"work": "two"}]
    assert Execution.get_by_id(parent_id).status == ExecutionStatus.SUCCEEDED


def test_a_child_that_fails_or_is_cancelled_fails_its_item(store: Store) -> None:
    parent_id = child_loop(store, max_parallel=2)
    failing = start_child(store, parent_id, 0, 1)
    cancelled = start_child(store, parent_id, 1, 2)
    finish_child(store, failing, Report("failed", error="boom"))
    assert items(parent_id)[0].status == NodeStatus.FAILED
    assert node(parent_id, "each").status == NodeStatus.WAITING  # the other item still runs
    assert store.cancel(cancelled)
    each = node(parent_id, "each")
    assert each.status == NodeStatus.FAILED
    assert each.error.startswith(f"item 0 failed: sub-workflow execution {failing} failed")
    assert "(and 1 more items)" in each.error
    assert "cancelled" in str(items(parent_id)[1].error)


def test_cancelling_the_parent_cancels_the_children_of_its_items(store: Store) -> None:
    parent_id = child_loop(store, max_parallel=2)
    children = [start_child(store, parent_id, i, i + 1) for i in range(2)]
    assert store.cancel(parent_id)
    assert {Execution.get_by_id(c).status for c in children} == {ExecutionStatus.CANCELLED}
    assert {row.status for row in items(parent_id)} == {NodeStatus.CANCELLED}
    assert node(parent_id, "each").status == NodeStatus.CANCELLED


def test_a_bad_input_fails_the_item_without_a_child(store: Store) -> None:
    parent_id = child_loop(store, max_parallel=2)
    claim = claim_item(store, parent_id, 0)
    store.complete_item(claim, Report("child", child_reference="child", child_input={"n": "abc"}))
    row = items(parent_id)[0]
    assert row.status == NodeStatus.FAILED and row.child_execution_id is None
    assert row.error == "sub-workflow 'child': input 'n': 'abc' is not of type 'integer'"
    assert Execution.select().where(Execution.parent_id == parent_id).count() == 0


def test_a_missing_required_input_fails_the_node_naming_it(store: Store) -> None:
    child = version(store, "child", {"work": {"type": "noop"}}, data={"inputs": CHILD_INPUTS})
    call = {"type": "workflow", "config": {"workflow": "child"}}
    parent_id, _, _ = store.create_execution(
        version(store, "caller", {"call": call}, refs={"child": child}), {}
    )
    claim = claim_one(store, parent_id, "call", 1, "w")
    assert claim is not None
    complete_one(store, claim, Report("child", child_reference="child", child_input={}))
    assert node(parent_id, "call").status == NodeStatus.FAILED
    assert node(parent_id, "call").error == "sub-workflow 'child': missing required input 'n'"


def test_delay_items_wait_each_its_own_time(store: Store) -> None:
    each = {"type": "delay", "foreach": [1, 2], "config": {"duration": "{{ item }}"}}
    execution_id = fan_out(store, {"each": each}, [1, 2])
    for index in (0, 1):
        claim = claim_item(store, execution_id, index)
        store.complete_item(claim, Report("wait", output="in", wait_until=100.0 + index * 10))
    assert {row.status for row in items(execution_id)} == {NodeStatus.WAITING}
    assert queries.next_due(after=0.0) == 100.0
    store.wake_due(now=105.0)
    assert [row.status for row in items(execution_id)] == ["succeeded", "waiting"]
    assert queries.next_due(after=105.0) == 110.0
    store.wake_due(now=110.0)
    assert node(execution_id, "each").status == NodeStatus.SUCCEEDED
    assert node(execution_id, "each").output == ["in", "in"]
    assert queries.next_due(after=110.0) is None


def test_a_deadline_fails_the_dispatched_nodes_and_their_pending_dependents(store: Store) -> None:
    nodes = {
        "busy": {"type": "shell", "config": {"run": "sleep 9"}},
        "nap": {"type": "delay", "config": {"duration": "1h"}},
        "each": {"type": "noop", "foreach": [1, 2]},
        "later": {"type": "noop", "needs": ["busy"]},
    }
    data = {"timeout": "10s"}
    execution_id, _, _ = store.create_execution(version(store, "dl", nodes, data=data), {})
    execution = Execution.get_by_id(execution_id)
    assert queries.next_due(after=execution.created_at) == execution.timeout_at
    claim_one(store, execution_id, "busy", 1, "w")
    nap = claim_one(store, execution_id, "nap", 1, "w")
    assert nap is not None
    complete_one(store, nap, Report("wait", wait_until=execution.created_at + 3600))
    each = claim_one(store, execution_id, "each", 1, "w")
    assert each is not None
    complete_one(store, each, Report("fanout", output=[1, 2]))
    claim_item(store, execution_id, 0)
    assert store.expire_timeouts(now=execution.timeout_at) == [execution_id]
    execution = Execution.get_by_id(execution_id)
    assert execution.status == ExecutionStatus.FAILED
    assert execution.error == "execution timed out after 10s: exceeded its deadline"
    for node_id in ("busy", "nap", "each"):
        row = node(execution_id, node_id)
        assert row.status == NodeStatus.FAILED, node_id
        assert row.error == "the execution timed out after 10s: exceeded its deadline"
    assert node(execution_id, "later").status == NodeStatus.UPSTREAM_FAILED
    assert [row.status for row in items(execution_id)] == ["failed", "failed"]

    # `spane retry` runs what the deadline stopped, and what waited for it, once more.
    store.retry_execution(execution_id, now=execution.timeout_at + 1)
    assert node(execution_id, "busy").status == NodeStatus.QUEUED
    assert node(execution_id, "later").status == NodeStatus.PENDING
    assert Execution.get_by_id(execution_id).status == ExecutionStatus.RUNNING


def test_a_sub_workflow_item_reported_twice_starts_one_child(store: Store) -> None:
    parent_id = child_loop(store, max_parallel=2)
    claim = claim_item(store, parent_id, 0)
    report = Report("child", child_reference="child", child_input={"n": 1})
    store.complete_item(claim, report)
    assert store.complete_item(claim, report) == []
    assert Execution.select().where(Execution.parent_id == parent_id).count() == 1
