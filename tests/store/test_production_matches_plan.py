"""The states a real store reaches, through the claims and completions workers make, are the
states the pure `plan` reaches, on random graphs with random outcomes and branch choices."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dag_scenarios import Scenario, scenarios
from hypothesis import given, settings
from hypothesis import strategies as st

from spane_cli.config import Settings
from spane_cli.engine.connections import open_store
from spane_cli.scheduler import plan
from spane_cli.states import TERMINAL_NODE, ExecutionStatus, NodeStatus
from spane_cli.store.models import Execution, NodeRun
from spane_cli.store.records import ClaimedNode, Dispatch, Report
from spane_cli.store.store import Store
from spane_cli.store.versions import register_version


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    path: Path = tmp_path_factory.mktemp("production") / "spane.db"
    opened = open_store(Settings(db_url=f"sqlite:///{path}"))
    yield opened
    opened.close()


def source_of(scenario: Scenario) -> dict[str, Any]:
    """The workflow as a file would say it (an exit handler that waits for the whole main
    graph says only `on_exit: true`)."""
    nodes: dict[str, Any] = {}
    for node_id, node in scenario.workflow.nodes.items():
        implied = node.on_exit and "x0" not in node.needs
        nodes[node_id] = {
            "type": node.type,
            "needs": [] if implied else list(node.needs),
            "continue_on_fail": node.continue_on_fail,
        }
        if not implied:
            nodes[node_id]["trigger"] = str(node.trigger)
        if node.on_exit:
            nodes[node_id]["on_exit"] = True
    return {"name": "random", "nodes": nodes}


def report_for(scenario: Scenario, node_id: str) -> Report:
    outcome = scenario.outcomes[node_id]
    if outcome is NodeStatus.FAILED:
        return Report("failed", error="drawn to fail")
    if outcome is NodeStatus.SKIPPED:
        return Report("skipped")  # a `when:` that was false
    chosen = scenario.choices.get(node_id)
    return Report("succeeded", chosen=list(chosen) if chosen is not None else None)


def pure_run(scenario: Scenario) -> tuple[dict[str, NodeStatus], ExecutionStatus | None]:
    """Every ready node runs before the next `plan`, until nothing is ready."""
    wf = scenario.workflow
    statuses = dict.fromkeys(wf.nodes, NodeStatus.PENDING)
    chosen: dict[str, tuple[str, ...]] = {}
    while True:
        decided = plan(wf, statuses, chosen)
        statuses.update(dict.fromkeys(decided.skipped, NodeStatus.SKIPPED))
        statuses.update(dict.fromkeys(decided.upstream_failed, NodeStatus.UPSTREAM_FAILED))
        if not decided.ready:
            return statuses, decided.finished
        for node_id in decided.ready:
            statuses[node_id] = scenario.outcomes[node_id]
            if statuses[node_id] is NodeStatus.SUCCEEDED and node_id in scenario.choices:
                chosen[node_id] = scenario.choices[node_id]


def production_run(store: Store, scenario: Scenario, batch: int, take_next: bool) -> str:
    """Claims and completions as workers make them: batches of `batch` jobs, and (with
    `take_next`) the child a completion hands straight to its worker."""
    version = register_version(store.database, "random", source_of(scenario), {})
    execution_id, _, queued = store.create_execution(int(version.id), {})
    jobs: list[Dispatch] = list(queued)
    handed: list[ClaimedNode] = []
    for _ in range(10 * len(scenario.workflow.nodes) + 10):
        if not jobs and not handed:
            return execution_id
        taken, jobs = jobs[:batch], jobs[batch:]
        claims = handed + store.claim_nodes(
            [(d.execution_id, d.node_id, d.attempt) for d in taken], "worker"
        )
        handed = []
        dispatches, follow = store.complete_nodes(
            [(claim, report_for(scenario, claim.node_id)) for claim in claims],
            worker="worker" if take_next else None,
            queues=["default"],
        )
        jobs += dispatches
        if follow is not None:
            handed.append(follow)
    raise AssertionError("the execution never stopped making work")


@settings(max_examples=150, deadline=None)
@given(scenarios(), st.integers(min_value=1, max_value=8), st.booleans())
def test_store_reaches_the_states_plan_reaches(
    store: Store, scenario: Scenario, batch: int, take_next: bool
) -> None:
    execution_id = production_run(store, scenario, batch, take_next)
    expected, finished = pure_run(scenario)
    reached = {
        row.node_id: NodeStatus(row.status)
        for row in NodeRun.select().where(NodeRun.execution == execution_id)
    }
    assert reached == expected
    assert all(status in TERMINAL_NODE for status in reached.values())
    assert Execution.get_by_id(execution_id).status == finished
