"""Property tests: driving random DAGs to the end with `plan` alone, as the reconciler would."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from dag_scenarios import SUCCESS_RULES, Scenario, scenarios
from hypothesis import given, settings

from spane_cli.scheduler import (
    ParentState,
    ParentView,
    Plan,
    Readiness,
    branch_choice,
    child_readiness,
    execution_result,
    plan,
)
from spane_cli.states import TERMINAL_NODE, ExecutionStatus, NodeStatus
from spane_cli.workflow.model import Workflow


@dataclass
class Run:
    statuses: dict[str, NodeStatus]
    chosen: dict[str, tuple[str, ...]] = field(default_factory=dict)
    ran: list[str] = field(default_factory=list)
    rounds: int = 0
    finished: ExecutionStatus | None = None


def parents_terminal(wf: Workflow, node_id: str, statuses: Mapping[str, NodeStatus]) -> bool:
    return all(statuses[parent] in TERMINAL_NODE for parent in wf.nodes[node_id].needs)


def simulate(scenario: Scenario) -> Run:
    """Run the workflow to its end: every READY node finishes before the next plan."""
    wf = scenario.workflow
    run = Run(statuses={node_id: NodeStatus.PENDING for node_id in wf.nodes})
    limit = len(wf.nodes) + 1
    while True:
        run.rounds += 1
        assert run.rounds <= limit, f"no end after {limit} rounds: {run.statuses}"
        snapshot = dict(run.statuses)
        decided = plan(wf, snapshot, run.chosen)
        applied = check_is_a_fixed_point(wf, snapshot, run.chosen, decided)
        run.statuses.update(applied)

        for node_id in decided.ready:
            assert node_id not in run.ran, f"{node_id} ran twice"
            # A node runs only once all its parents are over, skips of this round included.
            assert parents_terminal(wf, node_id, applied)
            run.ran.append(node_id)
            outcome = scenario.outcomes[node_id]
            run.statuses[node_id] = outcome
            if outcome is NodeStatus.SUCCEEDED and node_id in scenario.choices:
                run.chosen[node_id] = scenario.choices[node_id]

        if not decided.ready:
            # Nothing is in flight, so after this round's skips the execution must be over.
            run.finished = decided.finished
            assert run.finished is not None, f"stuck: {run.statuses}"
            return run


def check_is_a_fixed_point(
    wf: Workflow,
    snapshot: Mapping[str, NodeStatus],
    chosen: Mapping[str, Sequence[str]],
    decided: Plan,
) -> dict[str, NodeStatus]:
    """The store decides one child at a time with child_readiness; plan must agree with it.

    Once plan's skips are applied, every node plan left pending must still be NOT_YET, and
    every node it decided must get the same answer from child_readiness. Returns the statuses
    with the skips applied.
    """
    by_node: dict[str, Readiness] = {}
    for readiness, node_ids in (
        (Readiness.READY, decided.ready),
        (Readiness.SKIPPED, decided.skipped),
        (Readiness.UPSTREAM_FAILED, decided.upstream_failed),
    ):
        for node_id in node_ids:
            assert node_id not in by_node, f"{node_id} decided twice"
            assert snapshot[node_id] is NodeStatus.PENDING
            by_node[node_id] = readiness
    applied = dict(snapshot)
    applied.update(dict.fromkeys(decided.skipped, NodeStatus.SKIPPED))
    applied.update(dict.fromkeys(decided.upstream_failed, NodeStatus.UPSTREAM_FAILED))
    for node_id, node in wf.nodes.items():
        if snapshot[node_id] is not NodeStatus.PENDING:
            continue
        parents = {
            parent: ParentView(
                status=applied[parent],
                continue_on_fail=wf.nodes[parent].continue_on_fail,
                chose_child=branch_choice(
                    wf,
                    parent,
                    ParentState(applied[parent], tuple(chosen.get(parent, ()))),
                    node_id,
                ),
            )
            for parent in node.needs
        }
        expected = child_readiness(node.trigger, parents)
        assert by_node.get(node_id, Readiness.NOT_YET) is expected, node_id
    return applied


@settings(max_examples=200, deadline=None)
@given(scenarios())
def test_random_runs_end_with_every_node_terminal(scenario: Scenario) -> None:
    wf = scenario.workflow
    run = simulate(scenario)

    assert run.rounds <= len(wf.nodes) + 1
    assert set(run.statuses) == set(wf.nodes)
    assert all(status in TERMINAL_NODE for status in run.statuses.values())
    assert len(run.ran) == len(set(run.ran))
    # Exactly the nodes that ran have a status a run produces; the rest were decided by plan.
    for node_id, status in run.statuses.items():
        if node_id in run.ran:
            assert status is scenario.outcomes[node_id]
        else:
            assert status in (NodeStatus.SKIPPED, NodeStatus.UPSTREAM_FAILED)
    assert run.finished is execution_result(wf, run.statuses)
    # Entry nodes always run.
    assert set(wf.entry_nodes) <= set(run.ran)


@settings(max_examples=100, deadline=None)
@given(scenarios(rules=SUCCESS_RULES, with_failures=False, with_branches=False))
def test_all_success_run_without_branches_succeeds_everywhere(scenario: Scenario) -> None:
    run = simulate(scenario)
    assert run.finished is ExecutionStatus.SUCCEEDED
    assert run.statuses == dict.fromkeys(scenario.workflow.nodes, NodeStatus.SUCCEEDED)
    # Nodes in a chain of length k need k rounds, plus one to notice the end.
    assert run.rounds <= len(scenario.workflow.nodes) + 1


@settings(max_examples=100, deadline=None)
@given(scenarios(with_failures=False, with_branches=False))
def test_all_success_run_with_any_rules_still_succeeds(scenario: Scenario) -> None:
    # all_failed / one_failed nodes are skipped (with their dependents) but fail nothing.
    run = simulate(scenario)
    assert run.finished is ExecutionStatus.SUCCEEDED
    assert NodeStatus.UPSTREAM_FAILED not in run.statuses.values()
