"""Random workflows and what each node does when it runs, for property tests of scheduling:
the pure `plan` (tests/engine) and the store's production path (tests/store) draw the same."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from hypothesis import strategies as st

from spane_cli.states import NodeStatus
from spane_cli.workflow.model import Node, TriggerRule, Workflow

# Rules under which a node runs when every parent succeeded; all_failed and one_failed nodes
# are skipped in an all-success run.
SUCCESS_RULES = [
    TriggerRule.ALL_SUCCESS,
    TriggerRule.ALL_DONE,
    TriggerRule.ONE_SUCCESS,
    TriggerRule.NONE_FAILED,
    TriggerRule.NONE_SKIPPED,
]

# What a node does when it runs. SKIPPED stands for a `when` that evaluated to false.
OUTCOMES = [NodeStatus.SUCCEEDED, NodeStatus.FAILED, NodeStatus.SKIPPED]


@dataclass(frozen=True)
class Scenario:
    workflow: Workflow
    outcomes: Mapping[str, NodeStatus]  # what each node ends in if it runs
    choices: Mapping[str, tuple[str, ...]]  # children a branch chooses if it succeeds


@st.composite
def scenarios(
    draw: st.DrawFn,
    rules: Sequence[TriggerRule] = tuple(TriggerRule),
    with_failures: bool = True,
    with_branches: bool = True,
    with_exits: bool = True,
) -> Scenario:
    count = draw(st.integers(min_value=1, max_value=25))
    ids = [f"n{i}" for i in range(count)]
    nodes: dict[str, Node] = {}
    for index, node_id in enumerate(ids):
        # Parents among earlier nodes keep the graph acyclic.
        needs = (
            draw(st.lists(st.sampled_from(ids[:index]), max_size=4, unique=True)) if index else []
        )
        nodes[node_id] = Node(
            id=node_id,
            type="branch" if with_branches and draw(st.integers(0, 4)) == 0 else "noop",
            needs=tuple(needs),
            trigger=draw(st.sampled_from(list(rules))),
            continue_on_fail=with_failures and draw(st.booleans()),
        )
    # Exit handlers: one that waits for the whole main graph (what build_workflow makes of
    # `on_exit: true` without needs), and one below it under a drawn rule.
    exits = draw(st.integers(0, 2)) if with_exits else 0
    main = tuple(ids)
    for index in range(exits):
        exit_id = f"x{index}"
        nodes[exit_id] = Node(
            id=exit_id,
            type="noop",
            needs=main if index == 0 else ("x0",),
            trigger=TriggerRule.ALWAYS if index == 0 else draw(st.sampled_from(list(rules))),
            on_exit=True,
        )
        ids.append(exit_id)
    # Files may declare children before their parents: shuffle the declaration order.
    file_order = draw(st.permutations(ids))
    wf = Workflow(name="random", nodes={node_id: nodes[node_id] for node_id in file_order})

    outcomes = {
        node_id: draw(st.sampled_from(OUTCOMES)) if with_failures else NodeStatus.SUCCEEDED
        for node_id in ids
    }
    choices: dict[str, tuple[str, ...]] = {}
    for node_id, node in wf.nodes.items():
        children = wf.children(node_id)
        if node.type == "branch" and children:
            choices[node_id] = tuple(
                draw(st.lists(st.sampled_from(children), unique=True, max_size=len(children)))
            )
    return Scenario(wf, outcomes, choices)
