"""Every Airflow trigger rule over tables of parent states, the branch rule for nodes below a
chosen path, and the table of docs/trigger-rules.md held to the scheduler."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from spane_cli.scheduler import ParentView, Readiness, child_readiness, plan
from spane_cli.states import NodeStatus
from spane_cli.workflow.model import Node, TriggerRule, Workflow

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "trigger-rules.md"

RUN = Readiness.READY
SKIP = Readiness.SKIPPED
UF = Readiness.UPSTREAM_FAILED

KINDS: dict[str, ParentView] = {
    "S": ParentView(NodeStatus.SUCCEEDED, False),
    "F": ParentView(NodeStatus.FAILED, False),
    "F+": ParentView(NodeStatus.FAILED, True),  # continue_on_fail: counts as succeeded
    "SK": ParentView(NodeStatus.SKIPPED, False),
    "UF": ParentView(NodeStatus.UPSTREAM_FAILED, False),
    "C": ParentView(NodeStatus.CANCELLED, False),
}

# The parent combinations every rule is checked over, and what each rule makes of them.
COMBINATIONS = [
    ("S",),
    ("F",),
    ("SK",),
    ("UF",),
    ("S", "S"),
    ("S", "F"),
    ("S", "SK"),
    ("F", "F"),
    ("F", "SK"),
    ("SK", "SK"),
    ("UF", "SK"),
    ("S", "UF"),
    ("F", "UF"),
    ("F+", "SK"),
    ("C", "C"),
    ("S", "F", "SK"),
]
TABLE: dict[TriggerRule, list[Readiness]] = {
    # S    F     SK    UF    SS   SF   SSK   FF   FSK   SKSK  UFSK  SUF  FUF  F+SK  CC    SFSK
    TriggerRule.ALL_SUCCESS: [
        RUN, UF, SKIP, UF, RUN, UF, SKIP, UF, UF, SKIP, UF, UF, UF, SKIP, SKIP, UF
    ],
    TriggerRule.ALL_FAILED: [
        SKIP, RUN, SKIP, RUN, SKIP, SKIP, SKIP, RUN, SKIP, SKIP, SKIP, SKIP, RUN, SKIP, SKIP, SKIP
    ],
    TriggerRule.ALL_DONE: [RUN] * 16,
    TriggerRule.ALL_SKIPPED: [
        SKIP, SKIP, RUN, SKIP, SKIP, SKIP, SKIP, SKIP, SKIP, RUN, SKIP, SKIP, SKIP, SKIP, RUN, SKIP
    ],
    TriggerRule.ONE_SUCCESS: [
        RUN, UF, SKIP, UF, RUN, RUN, RUN, UF, UF, SKIP, UF, RUN, UF, RUN, SKIP, RUN
    ],
    TriggerRule.ONE_FAILED: [
        SKIP, RUN, SKIP, RUN, SKIP, RUN, SKIP, RUN, RUN, SKIP, RUN, RUN, RUN, SKIP, SKIP, RUN
    ],
    TriggerRule.ONE_DONE: [
        RUN, RUN, SKIP, SKIP, RUN, RUN, RUN, RUN, RUN, SKIP, SKIP, RUN, RUN, RUN, SKIP, RUN
    ],
    TriggerRule.NONE_FAILED: [
        RUN, UF, RUN, UF, RUN, UF, RUN, UF, UF, RUN, UF, UF, UF, RUN, RUN, UF
    ],
    TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS: [
        RUN, UF, SKIP, UF, RUN, UF, RUN, UF, UF, SKIP, UF, UF, UF, RUN, SKIP, UF
    ],
    TriggerRule.NONE_SKIPPED: [
        RUN, RUN, SKIP, RUN, RUN, RUN, SKIP, RUN, SKIP, SKIP, SKIP, RUN, RUN, SKIP, SKIP, SKIP
    ],
    TriggerRule.ALL_DONE_MIN_ONE_SUCCESS: [
        RUN, UF, SKIP, UF, RUN, RUN, SKIP, UF, SKIP, SKIP, SKIP, RUN, UF, SKIP, SKIP, SKIP
    ],
    TriggerRule.ALWAYS: [RUN] * 16,
}  # fmt: skip
CASES = [
    (rule, kinds, outcome)
    for rule, outcomes in TABLE.items()
    for kinds, outcome in zip(COMBINATIONS, outcomes, strict=True)
]


def test_the_table_covers_every_rule() -> None:
    assert set(TABLE) == set(TriggerRule)


@pytest.mark.parametrize(
    ("rule", "kinds", "expected"),
    CASES,
    ids=[f"{rule.value}-{'_'.join(kinds)}" for rule, kinds, _ in CASES],
)
def test_rule_over_parent_states(
    rule: TriggerRule, kinds: tuple[str, ...], expected: Readiness
) -> None:
    parents = {f"p{i}": KINDS[kind] for i, kind in enumerate(kinds)}
    assert child_readiness(rule, parents) is expected


def test_one_success_after_a_failure_and_a_skip_is_upstream_failed() -> None:
    # The case the rule is most often read for: nothing succeeded, and something failed.
    parents = {"a": KINDS["F"], "b": KINDS["SK"], "c": KINDS["SK"]}
    assert child_readiness(TriggerRule.ONE_SUCCESS, parents) is UF
    only_skips = {"a": KINDS["SK"], "b": KINDS["C"]}
    assert child_readiness(TriggerRule.ONE_SUCCESS, only_skips) is SKIP


# --- the documented table ---------------------------------------------------------------------

WORDS = {
    "succeeded": "S",
    "failed": "F",
    "skipped": "SK",
    "upstream_failed": "UF",
}
OUTCOMES = {"run": RUN, "skipped": SKIP, "upstream_failed": UF}


def documented_table() -> list[tuple[TriggerRule, tuple[str, ...], Readiness]]:
    text = DOC.read_text(encoding="utf-8")
    header = next(line for line in text.splitlines() if line.startswith("| rule | succeeded"))
    columns = [
        tuple(WORDS[word.strip()] for word in cell.split("+"))
        for cell in header.strip("|").split("|")[1:]
    ]
    rows: list[tuple[TriggerRule, tuple[str, ...], Readiness]] = []
    for line in text.splitlines():
        match = re.match(
            r"^\| `([a-z_]+)`(?: \(default\))? \| (run|skipped|upstream_failed) \|", line
        )
        if not match:
            continue
        cells = [cell.strip() for cell in line.strip("|").split("|")[1:]]
        rule = TriggerRule(match.group(1))
        rows += [(rule, kinds, OUTCOMES[cell]) for kinds, cell in zip(columns, cells, strict=True)]
    return rows


def test_the_documented_table_is_what_the_scheduler_decides() -> None:
    rows = documented_table()
    assert {rule for rule, _, _ in rows} == set(TriggerRule)
    for rule, kinds, expected in rows:
        parents = {f"p{i}": KINDS[kind] for i, kind in enumerate(kinds)}
        assert child_readiness(rule, parents) is expected, (rule, kinds)


# --- branches ---------------------------------------------------------------------------------

S, SK_, P = NodeStatus.SUCCEEDED, NodeStatus.SKIPPED, NodeStatus.PENDING


def node(node_id: str, *needs: str, type_: str = "noop", **fields: Any) -> Node:
    return Node(id=node_id, type=type_, needs=needs, **fields)


def workflow(*nodes: Node) -> Workflow:
    return Workflow(name="test", nodes={n.id: n for n in nodes})


def test_a_direct_child_below_the_chosen_path_is_not_skipped() -> None:
    # branch -> join beside branch -> left -> join (Airflow's "empty branch"): join runs.
    wf = workflow(
        node("branch", type_="branch"),
        node("left", "branch"),
        node("right", "branch"),
        node("join", "branch", "left"),
    )
    first = plan(wf, {"branch": S, "left": P, "right": P, "join": P}, {"branch": ["left"]})
    assert first.ready == ("left",)
    assert first.skipped == ("right",)
    after = plan(wf, {"branch": S, "left": S, "right": SK_, "join": P}, {"branch": ["left"]})
    assert after.ready == ("join",)


def test_a_direct_child_deep_below_the_chosen_path_counts_as_chosen() -> None:
    wf = workflow(
        node("branch", type_="branch"),
        node("a", "branch"),
        node("b", "a"),
        node("other", "branch"),
        node("deep", "branch", "b"),
    )
    statuses = {"branch": S, "a": S, "b": S, "other": P, "deep": P}
    result = plan(wf, statuses, {"branch": ["a"]})
    assert result.ready == ("deep",)
    assert result.skipped == ("other",)


def test_a_direct_child_below_a_path_not_chosen_is_skipped() -> None:
    wf = workflow(
        node("branch", type_="branch"),
        node("left", "branch"),
        node("right", "branch"),
        node("after", "branch", "right", trigger=TriggerRule.ALL_DONE),
    )
    statuses = {"branch": S, "left": P, "right": P, "after": P}
    result = plan(wf, statuses, {"branch": ["left"]})
    assert result.ready == ("left",)
    assert result.skipped == ("right", "after")


@pytest.mark.parametrize("rule", list(TriggerRule))
def test_a_child_not_chosen_is_skipped_whatever_its_rule(rule: TriggerRule) -> None:
    wf = workflow(
        node("branch", type_="branch"),
        node("left", "branch"),
        node("right", "branch", trigger=rule),
    )
    result = plan(wf, {"branch": S, "left": P, "right": P}, {"branch": ["left"]})
    assert result.skipped == ("right",)


def test_the_join_after_a_branch_under_the_recommended_rule() -> None:
    wf = workflow(
        node("branch", type_="branch"),
        node("left", "branch"),
        node("right", "branch"),
        node("join", "left", "right", trigger=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS),
        node("strict_join", "left", "right"),
    )
    statuses = {"branch": S, "left": S, "right": SK_, "join": P, "strict_join": P}
    result = plan(wf, statuses, {"branch": ["left"]})
    assert result.ready == ("join",)
    assert result.skipped == ("strict_join",)
