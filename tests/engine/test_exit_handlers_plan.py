"""The pure side of exit handlers, fail_fast and retry.when: how the model wires an exit
handler, what plan and execution_result decide, and which failures are tried again."""

from __future__ import annotations

from typing import Any

import pytest

from spane_cli.scheduler import (
    execution_result,
    next_retry_delay,
    node_input,
    plan,
    retry_scope,
    workflow_status,
)
from spane_cli.states import ExecutionStatus, NodeStatus
from spane_cli.workflow.model import Node, RetryPolicy, TriggerRule, build_workflow

S, F, SK, P, R = (
    NodeStatus.SUCCEEDED,
    NodeStatus.FAILED,
    NodeStatus.SKIPPED,
    NodeStatus.PENDING,
    NodeStatus.RUNNING,
)


def built(nodes: dict[str, Any], **extra: Any) -> Any:
    return build_workflow({"version": 1, "name": "w", "nodes": nodes, **extra})


EXIT = {"type": "noop", "on_exit": True}


def with_exits(**extra: Any) -> Any:
    return built(
        {
            "a": {"type": "noop"},
            "b": {"type": "noop", "needs": ["a"]},
            "c": {"type": "noop"},
            "x": EXIT,
            "y": {**EXIT, "needs": ["x"]},
        },
        **extra,
    )


def test_an_exit_handler_needs_every_main_node_and_is_drawn_below_the_leaves() -> None:
    wf = with_exits()
    assert wf.nodes["x"].needs == ("a", "b", "c")
    assert wf.nodes["x"].trigger is TriggerRule.ALWAYS
    assert wf.nodes["y"].needs == ("x",)
    assert wf.leaf_nodes == ("b", "c")
    assert wf.drawn_needs("x") == ("b", "c")
    assert wf.exit_nodes == frozenset({"x", "y"})


def test_an_exit_handler_receives_the_main_graphs_leaf_outputs() -> None:
    wf = with_exits()
    outputs = {"a": 1, "b": 2, "c": None, "x": "done"}
    assert node_input(wf, "x", {"in": 1}, outputs) == {"b": 2, "c": None}
    assert node_input(wf, "y", {"in": 1}, outputs) == "done"


def test_exit_handlers_wait_for_every_main_node_whatever_it_ended_with() -> None:
    wf = with_exits()
    assert plan(wf, {"a": S, "b": P, "c": R, "x": P, "y": P}).ready == ("b",)
    assert plan(wf, {"a": F, "b": P, "c": R, "x": P, "y": P}).ready == ()
    done = plan(wf, {"a": F, "b": NodeStatus.UPSTREAM_FAILED, "c": S, "x": P, "y": P})
    assert done.ready == ("x",)
    assert done.finished is None


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        ({"a": S, "b": S, "c": S, "x": S, "y": S}, ExecutionStatus.SUCCEEDED),
        ({"a": S, "b": S, "c": S, "x": F, "y": NodeStatus.UPSTREAM_FAILED}, ExecutionStatus.FAILED),
        ({"a": F, "b": SK, "c": S, "x": S, "y": S}, ExecutionStatus.FAILED),
        ({"a": S, "b": S, "c": S, "x": S, "y": P}, None),
        ({"a": S, "b": S, "c": S, "x": SK, "y": SK}, ExecutionStatus.SUCCEEDED),
    ],
)
def test_the_main_graph_decides_and_a_failed_exit_handler_fails_a_success(
    statuses: dict[str, NodeStatus], expected: ExecutionStatus | None
) -> None:
    assert execution_result(with_exits(), statuses) is expected


def test_workflow_status_so_far_and_at_the_end() -> None:
    wf = with_exits()
    assert workflow_status(wf, {"a": S, "b": R, "c": P, "x": P, "y": P}) == "running"
    assert workflow_status(wf, {"a": F, "b": P, "c": R, "x": P, "y": P}) == "failed"
    assert workflow_status(wf, {"a": S, "b": S, "c": S, "x": R, "y": P}) == "succeeded"
    # An exit handler's own failure is not the main graph's status.
    assert workflow_status(wf, {"a": S, "b": S, "c": S, "x": F, "y": P}) == "succeeded"


def test_fail_fast_skips_the_pending_main_nodes_and_lets_exit_handlers_wait() -> None:
    wf = built(
        {
            "a": {"type": "noop"},
            "b": {"type": "noop", "needs": ["a"]},
            "slow": {"type": "noop"},
            "after_slow": {"type": "noop", "needs": ["slow"], "trigger": "all_done"},
            "x": EXIT,
        },
        fail_fast=True,
    )
    running = plan(wf, {"a": F, "b": P, "slow": R, "after_slow": P, "x": P})
    assert running.skipped == ("b", "after_slow")
    assert running.ready == ()
    ended = plan(wf, {"a": F, "b": SK, "slow": S, "after_slow": SK, "x": P})
    assert ended.ready == ("x",)


def test_without_fail_fast_the_other_branch_goes_on() -> None:
    wf = built(
        {
            "a": {"type": "noop"},
            "b": {"type": "noop", "needs": ["a"]},
            "slow": {"type": "noop"},
            "after_slow": {"type": "noop", "needs": ["slow"]},
        }
    )
    assert plan(wf, {"a": F, "b": P, "slow": S, "after_slow": P}).ready == ("after_slow",)


def retried(when: str, attempts: int = 5) -> Node:
    return Node(id="n", type="shell", retry=RetryPolicy(attempts=attempts, when=when))


@pytest.mark.parametrize(
    ("when", "failure", "retries"),
    [
        ("status == 503", retry_scope(1, "HTTP 503", http_status=503), True),
        ("status == 503", retry_scope(1, "HTTP 404", http_status=404), False),
        ("status == 503", retry_scope(1, "timed out"), False),
        ("exit_code in [75, 111]", retry_scope(1, "exit code 111", exit_code=111), True),
        ("'busy' in error", retry_scope(2, "exit code 1: busy", exit_code=1), True),
        ("attempt < 2", retry_scope(2, "x"), False),
        # Cannot be computed for this failure (None > 1): no retry, never an exception.
        ("exit_code > 1", retry_scope(1, "HTTP 500", http_status=500), False),
        ("error.nosuchthing()", retry_scope(1, "x"), False),
    ],
)
def test_retry_when_over_one_failure(when: str, failure: dict[str, Any], retries: bool) -> None:
    delay = next_retry_delay(retried(when), failure["attempt"], failure=failure)
    assert (delay is not None) is retries


def test_retry_when_never_adds_attempts() -> None:
    failure = retry_scope(3, "HTTP 503", http_status=503)
    assert next_retry_delay(retried("true", attempts=3), 3, failure=failure) is None
