"""The pure scheduler: trigger rules, branches, transitive skips, data between nodes, retries."""

from __future__ import annotations

import random
from typing import Any

import pytest

from spane_cli.scheduler import (
    ParentView,
    Plan,
    Readiness,
    child_readiness,
    counts_as_failed,
    counts_as_succeeded,
    default_output,
    execution_result,
    next_retry_delay,
    node_input,
    plan,
)
from spane_cli.states import ExecutionStatus, NodeStatus
from spane_cli.workflow.model import Backoff, Node, RetryPolicy, TriggerRule, Workflow

S = NodeStatus.SUCCEEDED
F = NodeStatus.FAILED
SK = NodeStatus.SKIPPED
UF = NodeStatus.UPSTREAM_FAILED
C = NodeStatus.CANCELLED
P = NodeStatus.PENDING
R = NodeStatus.RUNNING

READY = Readiness.READY
SKIPPED = Readiness.SKIPPED
UPSTREAM_FAILED = Readiness.UPSTREAM_FAILED
NOT_YET = Readiness.NOT_YET

# "F+" is a parent that failed with continue_on_fail: it counts as succeeded.
PARENT_KINDS: dict[str, ParentView] = {
    "S": ParentView(S, False),
    "F": ParentView(F, False),
    "F+": ParentView(F, True),
    "SK": ParentView(SK, False),
    "UF": ParentView(UF, False),
    "C": ParentView(C, False),
    "P": ParentView(P, False),
    "R": ParentView(R, False),
    "Q": ParentView(NodeStatus.QUEUED, False),
    "RT": ParentView(NodeStatus.RETRYING, False),
    "W": ParentView(NodeStatus.WAITING, False),
}


def parents_of(*kinds: str) -> dict[str, ParentView]:
    return {f"p{i}": PARENT_KINDS[kind] for i, kind in enumerate(kinds)}


def workflow(*nodes: Node) -> Workflow:
    return Workflow(name="test", nodes={node.id: node for node in nodes})


def node(node_id: str, *needs: str, type_: str = "noop", **fields: Any) -> Node:
    return Node(id=node_id, type=type_, needs=needs, **fields)


# --- classification -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "continue_on_fail", "succeeded", "failed"),
    [
        (S, False, True, False),
        (S, True, True, False),
        (F, False, False, True),
        (F, True, True, False),
        (UF, False, False, True),
        (UF, True, False, True),
        (SK, False, False, False),
        (C, False, False, False),
        (P, False, False, False),
        (R, True, False, False),
    ],
)
def test_classification(
    status: NodeStatus, continue_on_fail: bool, succeeded: bool, failed: bool
) -> None:
    assert counts_as_succeeded(status, continue_on_fail) is succeeded
    assert counts_as_failed(status, continue_on_fail) is failed


# --- trigger rules ----------------------------------------------------------------------------

TRIGGER_CASES: list[tuple[TriggerRule, tuple[str, ...], Readiness]] = [
    # all_success
    (TriggerRule.ALL_SUCCESS, ("S",), READY),
    (TriggerRule.ALL_SUCCESS, ("S", "S", "S"), READY),
    (TriggerRule.ALL_SUCCESS, ("S", "F+"), READY),
    (TriggerRule.ALL_SUCCESS, ("S", "F"), UPSTREAM_FAILED),
    (TriggerRule.ALL_SUCCESS, ("S", "UF"), UPSTREAM_FAILED),
    (TriggerRule.ALL_SUCCESS, ("SK", "F"), UPSTREAM_FAILED),
    (TriggerRule.ALL_SUCCESS, ("S", "SK"), SKIPPED),
    (TriggerRule.ALL_SUCCESS, ("S", "C"), SKIPPED),
    (TriggerRule.ALL_SUCCESS, ("SK",), SKIPPED),
    # all_failed
    (TriggerRule.ALL_FAILED, ("F",), READY),
    (TriggerRule.ALL_FAILED, ("F", "UF"), READY),
    (TriggerRule.ALL_FAILED, ("F", "F+"), SKIPPED),
    (TriggerRule.ALL_FAILED, ("F", "S"), SKIPPED),
    (TriggerRule.ALL_FAILED, ("F", "SK"), SKIPPED),
    (TriggerRule.ALL_FAILED, ("F", "C"), SKIPPED),
    (TriggerRule.ALL_FAILED, ("S",), SKIPPED),
    # all_done
    (TriggerRule.ALL_DONE, ("S", "F", "F+", "SK", "UF", "C"), READY),
    (TriggerRule.ALL_DONE, ("F",), READY),
    (TriggerRule.ALL_DONE, ("SK",), READY),
    # one_success
    (TriggerRule.ONE_SUCCESS, ("S", "F"), READY),
    (TriggerRule.ONE_SUCCESS, ("F+", "F"), READY),
    (TriggerRule.ONE_SUCCESS, ("S", "SK", "UF"), READY),
    (TriggerRule.ONE_SUCCESS, ("F", "UF"), UPSTREAM_FAILED),
    (TriggerRule.ONE_SUCCESS, ("F",), UPSTREAM_FAILED),
    (TriggerRule.ONE_SUCCESS, ("F", "SK"), UPSTREAM_FAILED),
    (TriggerRule.ONE_SUCCESS, ("SK", "C"), SKIPPED),
    # one_failed
    (TriggerRule.ONE_FAILED, ("S", "F"), READY),
    (TriggerRule.ONE_FAILED, ("S", "UF"), READY),
    (TriggerRule.ONE_FAILED, ("SK", "F"), READY),
    (TriggerRule.ONE_FAILED, ("S", "F+"), SKIPPED),
    (TriggerRule.ONE_FAILED, ("S", "SK", "C"), SKIPPED),
    # none_failed
    (TriggerRule.NONE_FAILED, ("S", "SK", "C", "F+"), READY),
    (TriggerRule.NONE_FAILED, ("SK",), READY),
    (TriggerRule.NONE_FAILED, ("S", "F"), UPSTREAM_FAILED),
    (TriggerRule.NONE_FAILED, ("SK", "UF"), UPSTREAM_FAILED),
    # none_skipped
    (TriggerRule.NONE_SKIPPED, ("S", "F", "UF", "F+"), READY),
    (TriggerRule.NONE_SKIPPED, ("S", "SK"), SKIPPED),
    (TriggerRule.NONE_SKIPPED, ("F", "C"), SKIPPED),
]


@pytest.mark.parametrize(
    ("trigger", "kinds", "expected"),
    TRIGGER_CASES,
    ids=[f"{t.value}-{'_'.join(k)}" for t, k, _ in TRIGGER_CASES],
)
def test_trigger_rules(trigger: TriggerRule, kinds: tuple[str, ...], expected: Readiness) -> None:
    assert child_readiness(trigger, parents_of(*kinds)) is expected


@pytest.mark.parametrize("trigger", list(TriggerRule))
@pytest.mark.parametrize("waiting", ["P", "R", "Q", "RT", "W"])
def test_not_yet_while_any_parent_is_not_terminal(trigger: TriggerRule, waiting: str) -> None:
    # Even when the rule could already be decided (one_success with a succeeded parent).
    assert child_readiness(trigger, parents_of("S", "F", waiting)) is NOT_YET


@pytest.mark.parametrize("trigger", list(TriggerRule))
def test_no_parents_is_ready(trigger: TriggerRule) -> None:
    assert child_readiness(trigger, {}) is READY


def test_statuses_as_plain_strings_from_the_database() -> None:
    parents = {"a": ParentView("succeeded", False), "b": ParentView("failed", True)}  # type: ignore[arg-type]
    assert child_readiness("all_success", parents) is READY  # type: ignore[arg-type]


# --- branches ---------------------------------------------------------------------------------


@pytest.mark.parametrize("trigger", list(TriggerRule))
def test_branch_not_choosing_the_child_skips_it_whatever_the_rule(trigger: TriggerRule) -> None:
    parents = {
        "branch": ParentView(S, False, chose_child=False),
        "other": ParentView(F, False),
    }
    assert child_readiness(trigger, parents) is SKIPPED


def test_branch_choosing_the_child_lets_the_rule_decide() -> None:
    chosen = {"branch": ParentView(S, False, chose_child=True)}
    assert child_readiness(TriggerRule.ALL_SUCCESS, chosen) is READY
    with_failure = {**chosen, "other": ParentView(F, False)}
    assert child_readiness(TriggerRule.ALL_SUCCESS, with_failure) is UPSTREAM_FAILED


def test_branch_still_waits_for_the_other_parents() -> None:
    parents = {"branch": ParentView(S, False, chose_child=False), "other": ParentView(R, False)}
    assert child_readiness(TriggerRule.ALL_SUCCESS, parents) is NOT_YET


def branch_workflow() -> Workflow:
    return workflow(
        node("start"),
        node("route", "start", type_="branch"),
        node("left", "route"),
        node("right", "route"),
        node("after_right", "right"),
        node("join", "left", "after_right", trigger=TriggerRule.NONE_FAILED),
    )


def test_plan_skips_children_a_branch_did_not_choose_transitively() -> None:
    wf = branch_workflow()
    statuses = {"start": S, "route": S, "left": P, "right": P, "after_right": P, "join": P}
    result = plan(wf, statuses, {"route": ["left"]})
    assert result == Plan(
        ready=("left",), skipped=("right", "after_right"), upstream_failed=(), finished=None
    )


def test_plan_join_after_branch_runs_under_none_failed() -> None:
    wf = branch_workflow()
    statuses = {"start": S, "route": S, "left": S, "right": SK, "after_right": SK, "join": P}
    result = plan(wf, statuses, {"route": ["left"]})
    assert result.ready == ("join",)
    assert result.finished is None


# --- plan -------------------------------------------------------------------------------------


def chain(length: int, **first_fields: Any) -> Workflow:
    nodes = [node("n0", **first_fields)]
    nodes += [node(f"n{i}", f"n{i - 1}") for i in range(1, length)]
    return workflow(*nodes)


def test_plan_entry_nodes_are_ready_when_pending() -> None:
    wf = workflow(node("a"), node("b"), node("c", "a", "b"))
    assert plan(wf, {"a": P, "b": P, "c": P}) == Plan(("a", "b"), (), (), None)
    # Missing statuses count as pending.
    assert plan(wf, {}) == Plan(("a", "b"), (), (), None)


def test_plan_leaves_active_and_terminal_nodes_alone() -> None:
    wf = workflow(node("a"), node("b", "a"))
    assert plan(wf, {"a": R, "b": P}) == Plan((), (), (), None)
    assert plan(wf, {"a": S, "b": R}) == Plan((), (), (), None)


def test_plan_skip_goes_down_a_whole_chain_in_one_call() -> None:
    wf = chain(6)
    statuses = {"n0": SK} | {f"n{i}": P for i in range(1, 6)}
    result = plan(wf, statuses)
    assert result.skipped == ("n1", "n2", "n3", "n4", "n5")
    assert result.ready == ()
    assert result.finished is ExecutionStatus.SUCCEEDED


def test_plan_upstream_failure_goes_down_a_chain_and_fails_the_execution() -> None:
    wf = chain(4)
    statuses = {"n0": F, "n1": P, "n2": P, "n3": P}
    result = plan(wf, statuses)
    assert result.upstream_failed == ("n1", "n2", "n3")
    assert result.finished is ExecutionStatus.FAILED


def test_plan_is_independent_of_file_order() -> None:
    # Children declared before their parents: the walk is topological, not in file order.
    wf = workflow(node("c", "b"), node("b", "a"), node("a"))
    result = plan(wf, {"a": F, "b": P, "c": P})
    assert result.upstream_failed == ("c", "b")
    assert result.finished is ExecutionStatus.FAILED


def test_plan_error_handler_runs_after_a_failure_chain() -> None:
    wf = workflow(
        node("extract"),
        node("transform", "extract"),
        node("alert", "extract", "transform", trigger=TriggerRule.ONE_FAILED),
        node("cleanup", "transform", trigger=TriggerRule.ALL_DONE),
    )
    result = plan(wf, {"extract": F, "transform": P, "alert": P, "cleanup": P})
    assert result == Plan(("alert", "cleanup"), (), ("transform",), None)


def test_plan_continue_on_fail_node_lets_the_execution_succeed() -> None:
    wf = workflow(node("check", continue_on_fail=True), node("load", "check"))
    first = plan(wf, {"check": F, "load": P})
    assert first == Plan(("load",), (), (), None)
    assert plan(wf, {"check": F, "load": S}).finished is ExecutionStatus.SUCCEEDED


def test_plan_finished_when_everything_is_terminal() -> None:
    wf = workflow(node("a"), node("b", "a"))
    assert plan(wf, {"a": S, "b": S}) == Plan((), (), (), ExecutionStatus.SUCCEEDED)


# --- execution_result -------------------------------------------------------------------------

EXECUTION_CASES: list[tuple[dict[str, NodeStatus], ExecutionStatus | None]] = [
    ({"a": S, "b": S, "c": S}, ExecutionStatus.SUCCEEDED),
    ({"a": S, "b": SK, "c": SK}, ExecutionStatus.SUCCEEDED),
    ({"a": S, "b": S, "c": R}, None),
    ({"a": S, "b": S, "c": P}, None),
    ({"a": F, "b": S, "c": P}, None),
    ({"a": S, "b": S}, None),  # c has no status yet
    ({"a": F, "b": UF, "c": S}, ExecutionStatus.FAILED),
    ({"a": S, "b": UF, "c": S}, ExecutionStatus.FAILED),
    ({"a": S, "b": S, "c": F}, ExecutionStatus.SUCCEEDED),  # c has continue_on_fail
    ({"a": S, "b": C, "c": S}, ExecutionStatus.CANCELLED),
    ({"a": F, "b": C, "c": C}, ExecutionStatus.FAILED),
    ({"a": S, "b": C, "c": F}, ExecutionStatus.CANCELLED),
]


@pytest.mark.parametrize(("statuses", "expected"), EXECUTION_CASES)
def test_execution_result(
    statuses: dict[str, NodeStatus], expected: ExecutionStatus | None
) -> None:
    wf = workflow(node("a"), node("b", "a"), node("c", "a", continue_on_fail=True))
    assert execution_result(wf, statuses) is expected


# --- data between nodes -----------------------------------------------------------------------


def data_workflow() -> Workflow:
    return workflow(
        node("entry"),
        node("second_entry"),
        node("one", "entry"),
        node("many", "second_entry", "one", "entry"),
    )


def test_node_input_of_an_entry_node_is_the_workflow_input() -> None:
    assert node_input(data_workflow(), "entry", {"date": "2024-01-01"}, {}) == {
        "date": "2024-01-01"
    }


def test_node_input_with_one_parent_is_its_output() -> None:
    wf = data_workflow()
    assert node_input(wf, "one", {"x": 1}, {"entry": [1, 2]}) == [1, 2]
    # A parent without output (failed with continue_on_fail) gives None.
    assert node_input(wf, "one", {"x": 1}, {}) is None


def test_node_input_with_several_parents_is_a_mapping_in_needs_order() -> None:
    wf = data_workflow()
    outputs = {"entry": "e", "one": "o"}
    received = node_input(wf, "many", None, outputs)
    assert received == {"second_entry": None, "one": "o", "entry": "e"}
    assert list(received) == ["second_entry", "one", "entry"]


def test_default_output_maps_every_leaf_to_its_output() -> None:
    wf = workflow(node("a"), node("b", "a"), node("c", "a"), node("d"))
    outputs = {"a": 1, "b": 2, "d": {"rows": 3}}
    assert default_output(wf, outputs) == {"b": 2, "c": None, "d": {"rows": 3}}


# --- retries ----------------------------------------------------------------------------------


def test_single_attempt_never_retries() -> None:
    assert next_retry_delay(node("a"), 1) is None
    assert next_retry_delay(node("a", retry=RetryPolicy(attempts=1, delay=5.0)), 1) is None


@pytest.mark.parametrize(
    ("backoff", "max_delay", "delays"),
    [
        (Backoff.FIXED, None, [2.0, 2.0, 2.0, 2.0]),
        (Backoff.LINEAR, None, [2.0, 4.0, 6.0, 8.0]),
        (Backoff.EXPONENTIAL, None, [2.0, 4.0, 8.0, 16.0]),
        (Backoff.EXPONENTIAL, 5.0, [2.0, 4.0, 5.0, 5.0]),
        (Backoff.LINEAR, 3.0, [2.0, 3.0, 3.0, 3.0]),
        (Backoff.FIXED, 1.0, [1.0, 1.0, 1.0, 1.0]),
    ],
)
def test_retry_delays_by_backoff(
    backoff: Backoff, max_delay: float | None, delays: list[float]
) -> None:
    retried = node(
        "a", retry=RetryPolicy(attempts=5, backoff=backoff, delay=2.0, max_delay=max_delay)
    )
    assert [next_retry_delay(retried, attempt) for attempt in range(1, 5)] == delays
    assert next_retry_delay(retried, 5) is None


def test_three_attempts_retry_twice() -> None:
    retried = node("a", retry=RetryPolicy(attempts=3, backoff=Backoff.EXPONENTIAL, delay=1.0))
    assert next_retry_delay(retried, 1) == 1.0  # before the second try: `delay`
    assert next_retry_delay(retried, 2) == 2.0
    assert next_retry_delay(retried, 3) is None
    assert next_retry_delay(retried, 4) is None


def test_jittered_delay_is_reproducible_with_an_rng() -> None:
    retried = node("a", retry=RetryPolicy(attempts=3, delay=10.0, max_delay=12.0, jitter=True))
    first = next_retry_delay(retried, 1, random.Random(7))
    assert first == next_retry_delay(retried, 1, random.Random(7))
    assert first is not None and 5.0 <= first <= 12.0
