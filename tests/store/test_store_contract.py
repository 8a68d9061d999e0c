"""One store contract, run on SQLite and on PostgreSQL."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from store_steps import claim_one, complete_one

from spane_cli.states import ExecutionStatus, NodeStatus
from spane_cli.store.migrations import migrate, migration_status
from spane_cli.store.models import DeadLetter, Event, NodeRun, Outbox
from spane_cli.store.records import Report
from spane_cli.store.store import Store
from spane_cli.store.versions import register_version
from spane_cli.store.views import execution_view


def version(store: Store, nodes: dict[str, Any], **extra: Any) -> int:
    data = {"version": 1, "name": extra.pop("name", "wf"), "nodes": nodes, **extra}
    return int(register_version(store.database, data["name"], data, {}).id)


def statuses(store: Store, execution_id: str) -> dict[str, str]:
    return {
        row.node_id: row.status for row in NodeRun.select().where(NodeRun.execution == execution_id)
    }


def run_all(store: Store, execution_id: str, outcomes: dict[str, Report] | None = None) -> None:
    """Drive an execution to its end the way workers do, in dispatch order."""
    outcomes = outcomes or {}
    pending = list(Outbox.select().where(Outbox.execution_id == execution_id))
    queue = [(r.execution_id, r.node_id, r.attempt) for r in pending]
    while queue:
        execution, node, attempt = queue.pop(0)
        claim = claim_one(store, execution, node, attempt, "w1")
        if claim is None:
            continue
        outcome = outcomes.get(node, Report("succeeded", output={"from": node}))
        for dispatch in complete_one(store, claim, outcome):
            queue.append((dispatch.execution_id, dispatch.node_id, dispatch.attempt))


def test_migrations_are_recorded_and_idempotent(store: Store) -> None:
    assert migration_status(store.database).up_to_date
    assert migrate(store.database) == []


def test_a_chain_runs_to_success_with_data_passing(store: Store) -> None:
    vid = version(store, {"a": {"type": "noop"}, "b": {"type": "noop", "needs": ["a"]}})
    execution_id, created, dispatches = store.create_execution(vid, {"x": 1})
    assert created and [d.node_id for d in dispatches] == ["a"]
    run_all(store, execution_id)
    view = execution_view(store.require_execution(execution_id))
    assert view["status"] == "succeeded"
    assert view["output"] == {"b": {"from": "b"}}
    assert view["nodes"]["a"]["attempts"] == 1
    assert view["created_at"].endswith("Z") and view["finished_at"].endswith("Z")


def test_a_job_delivered_twice_runs_once(store: Store) -> None:
    vid = version(store, {"a": {"type": "noop"}})
    execution_id, _, _ = store.create_execution(vid, None)
    first = claim_one(store, execution_id, "a", 1, "w1")
    assert first is not None
    assert claim_one(store, execution_id, "a", 1, "w2") is None
    assert claim_one(store, execution_id, "a", 2, "w2") is None
    complete_one(store, first, Report("succeeded", output=1))
    assert complete_one(store, first, Report("failed", error="late")) == []
    assert statuses(store, execution_id) == {"a": "succeeded"}
    started = Event.select().where(
        (Event.execution_id == execution_id) & (Event.type == "node.started")
    )
    assert started.count() == 1


def test_failure_marks_dependents_upstream_failed_and_writes_a_dead_letter(store: Store) -> None:
    vid = version(
        store,
        {
            "a": {"type": "noop"},
            "b": {"type": "noop", "needs": ["a"]},
            "c": {"type": "noop", "needs": ["b"]},
            "other": {"type": "noop"},
        },
    )
    execution_id, _, _ = store.create_execution(vid, None)
    run_all(store, execution_id, {"a": Report("failed", error="boom\ndetails")})
    assert statuses(store, execution_id) == {
        "a": "failed",
        "b": "upstream_failed",
        "c": "upstream_failed",
        "other": "succeeded",
    }
    execution = store.require_execution(execution_id)
    assert execution.status == ExecutionStatus.FAILED
    assert execution.error.startswith("node 'a' failed: boom")
    letters = list(DeadLetter.select().where(DeadLetter.execution_id == execution_id))
    assert [(d.node_id, d.attempts) for d in letters] == [("a", 1)]


def test_continue_on_fail_counts_as_success_and_passes_null(store: Store) -> None:
    vid = version(
        store,
        {"a": {"type": "noop", "continue_on_fail": True}, "b": {"type": "noop", "needs": ["a"]}},
    )
    execution_id, _, _ = store.create_execution(vid, None)
    run_all(store, execution_id, {"a": Report("failed", error="x")})
    assert statuses(store, execution_id) == {"a": "failed", "b": "succeeded"}
    assert store.require_execution(execution_id).status == ExecutionStatus.SUCCEEDED
    assert DeadLetter.select().where(DeadLetter.execution_id == execution_id).count() == 0
    claim_input = NodeRun.get(NodeRun.node_id == "a", NodeRun.execution == execution_id)
    assert claim_input.error == "x"


def test_retry_with_zero_delay_requeues_the_next_attempt(store: Store) -> None:
    vid = version(store, {"a": {"type": "noop", "retry": {"attempts": 3}}})
    execution_id, _, _ = store.create_execution(vid, None)
    claim = claim_one(store, execution_id, "a", 1, "w")
    assert claim is not None
    again = complete_one(store, claim, Report("failed", error="flaky"))
    assert [(d.node_id, d.attempt) for d in again] == [("a", 2)]
    second = claim_one(store, execution_id, "a", 2, "w")
    assert second is not None
    complete_one(store, second, Report("succeeded", output="ok"))
    view = execution_view(store.require_execution(execution_id))
    assert view["status"] == "succeeded" and view["nodes"]["a"]["attempts"] == 2


def test_retry_with_delay_waits_for_the_reconciler(store: Store) -> None:
    vid = version(store, {"a": {"type": "noop", "retry": {"attempts": 2, "delay": "10s"}}})
    execution_id, _, _ = store.create_execution(vid, None, now=1000.0)
    claim = claim_one(store, execution_id, "a", 1, "w", now=1000.0)
    assert claim is not None
    assert complete_one(store, claim, Report("failed", error="e"), now=1001.0) == []
    assert statuses(store, execution_id) == {"a": "retrying"}
    assert store.wake_due(now=1005.0) == []
    due = store.wake_due(now=1011.5)
    assert [(d.node_id, d.attempt) for d in due] == [("a", 2)]


def test_branch_skips_the_children_it_did_not_choose(store: Store) -> None:
    vid = version(
        store,
        {
            "route": {"type": "branch", "config": {"cases": [{"when": "true", "next": ["yes"]}]}},
            "yes": {"type": "noop", "needs": ["route"]},
            "no": {"type": "noop", "needs": ["route"]},
            "after_no": {"type": "noop", "needs": ["no"]},
            "join": {"type": "noop", "needs": ["yes", "no"], "trigger": "none_failed"},
        },
    )
    execution_id, _, _ = store.create_execution(vid, None)
    run_all(store, execution_id, {"route": Report("succeeded", chosen=["yes"])})
    assert statuses(store, execution_id) == {
        "route": "succeeded",
        "yes": "succeeded",
        "no": "skipped",
        "after_no": "skipped",
        "join": "succeeded",
    }
    assert store.require_execution(execution_id).status == ExecutionStatus.SUCCEEDED


def test_fan_in_waits_for_every_parent(store: Store) -> None:
    parents = {f"p{i}": {"type": "noop"} for i in range(20)}
    vid = version(store, {**parents, "join": {"type": "noop", "needs": list(parents)}})
    execution_id, _, dispatches = store.create_execution(vid, None)
    assert len(dispatches) == 20
    run_all(store, execution_id)
    join = NodeRun.get(NodeRun.execution == execution_id, NodeRun.node_id == "join")
    assert join.status == NodeStatus.SUCCEEDED
    assert store.require_execution(execution_id).status == ExecutionStatus.SUCCEEDED


def test_the_same_idempotency_key_gives_the_same_execution(store: Store) -> None:
    vid = version(store, {"a": {"type": "noop"}})
    ids: list[str] = []

    def submit() -> None:
        execution_id, _, _ = store.create_execution(vid, None, idempotency_key="k-1")
        ids.append(execution_id)

    threads = [threading.Thread(target=submit) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(ids)) == 1


def test_cancel_ends_every_open_node_and_refuses_claims(store: Store) -> None:
    vid = version(store, {"a": {"type": "noop"}, "b": {"type": "noop", "needs": ["a"]}})
    execution_id, _, _ = store.create_execution(vid, None)
    claim = claim_one(store, execution_id, "a", 1, "w")
    assert claim is not None
    assert store.cancel(execution_id)
    assert not store.cancel(execution_id)
    assert complete_one(store, claim, Report("succeeded")) == []
    assert statuses(store, execution_id) == {"a": "cancelled", "b": "cancelled"}
    assert store.require_execution(execution_id).status == ExecutionStatus.CANCELLED


def test_pause_holds_claims_and_resume_redispatches(store: Store) -> None:
    vid = version(store, {"a": {"type": "noop"}})
    execution_id, _, _ = store.create_execution(vid, None)
    store.set_paused(execution_id, True)
    assert claim_one(store, execution_id, "a", 1, "w") is None
    resumed = store.set_paused(execution_id, False)
    assert [(d.node_id, d.attempt) for d in resumed] == [("a", 1)]
    assert claim_one(store, execution_id, "a", 1, "w") is not None


def test_a_delay_completes_when_due(store: Store) -> None:
    vid = version(store, {"wait": {"type": "delay", "config": {"duration": 5}}})
    execution_id, _, _ = store.create_execution(vid, "in", now=100.0)
    claim = claim_one(store, execution_id, "wait", 1, "w", now=100.0)
    assert claim is not None
    complete_one(store, claim, Report("wait", output="in", wait_until=105.0), now=100.0)
    assert statuses(store, execution_id) == {"wait": "waiting"}
    store.wake_due(now=104.0)
    assert statuses(store, execution_id) == {"wait": "waiting"}
    store.wake_due(now=105.0)
    assert store.require_execution(execution_id).status == ExecutionStatus.SUCCEEDED


def test_the_execution_timeout_fails_it(store: Store) -> None:
    vid = version(store, {"a": {"type": "noop"}}, timeout="1m")
    execution_id, _, _ = store.create_execution(vid, None, now=0.0)
    assert store.expire_timeouts(now=30.0) == []
    assert store.expire_timeouts(now=61.0) == [execution_id]
    execution = store.require_execution(execution_id)
    assert execution.status == ExecutionStatus.FAILED and "timed out" in execution.error


def test_replaying_a_dead_letter_finishes_the_execution_once(store: Store) -> None:
    from spane_cli.errors import OperationFailed

    vid = version(
        store,
        {
            "a": {"type": "noop", "retry": {"attempts": 2}},
            "b": {"type": "noop", "needs": ["a"]},
        },
    )
    execution_id, _, _ = store.create_execution(vid, None)
    run_all(store, execution_id, {"a": Report("failed", error="down")})
    assert statuses(store, execution_id) == {"a": "failed", "b": "upstream_failed"}
    letter = DeadLetter.get(DeadLetter.execution_id == execution_id)
    assert letter.attempts == 2
    dispatches = store.replay_dead_letter(letter.id)
    assert [(d.node_id, d.attempt) for d in dispatches] == [("a", 3)]
    assert store.require_execution(execution_id).status == ExecutionStatus.RUNNING
    queue = [(d.execution_id, d.node_id, d.attempt) for d in dispatches]
    while queue:
        claim = claim_one(store, *queue.pop(0), "w")
        assert claim is not None
        for d in complete_one(store, claim, Report("succeeded", output="fixed")):
            queue.append((d.execution_id, d.node_id, d.attempt))
    assert statuses(store, execution_id) == {"a": "succeeded", "b": "succeeded"}
    assert store.require_execution(execution_id).status == ExecutionStatus.SUCCEEDED
    assert DeadLetter.get_by_id(letter.id).replayed_at is not None
    with pytest.raises(OperationFailed):
        store.replay_dead_letter(letter.id)
    assert store.require_execution(execution_id).status == ExecutionStatus.SUCCEEDED


def test_a_replayed_node_gets_a_fresh_retry_budget(store: Store) -> None:

    vid = version(store, {"a": {"type": "noop", "retry": {"attempts": 2}}})
    execution_id, _, _ = store.create_execution(vid, None)
    run_all(store, execution_id, {"a": Report("failed", error="down")})
    letter = DeadLetter.get(DeadLetter.execution_id == execution_id)
    (first,) = store.replay_dead_letter(letter.id)
    claim = claim_one(store, first.execution_id, "a", first.attempt, "w")
    assert claim is not None
    again = complete_one(store, claim, Report("failed", error="still down"))
    assert [(d.node_id, d.attempt) for d in again] == [("a", 4)]


def test_retry_reruns_only_what_failed(store: Store) -> None:

    vid = version(
        store,
        {
            "ok": {"type": "noop"},
            "bad": {"type": "noop"},
            "end": {"type": "noop", "needs": ["ok", "bad"]},
        },
    )
    execution_id, _, _ = store.create_execution(vid, None)
    run_all(store, execution_id, {"bad": Report("failed", error="x")})
    dispatches = store.retry_execution(execution_id)
    assert [d.node_id for d in dispatches] == ["bad"]
    run_all(store, execution_id)
    view = execution_view(store.require_execution(execution_id))
    assert view["status"] == "succeeded"
    assert view["nodes"]["ok"]["attempts"] == 1
    assert view["nodes"]["bad"]["attempts"] == 2


def test_a_branch_that_failed_and_continued_skips_its_children(store: Store) -> None:
    vid = version(
        store,
        {
            "route": {
                "type": "branch",
                "continue_on_fail": True,
                "config": {"cases": [{"when": "true", "next": ["left"]}]},
            },
            "left": {"type": "noop", "needs": ["route"]},
            "right": {"type": "noop", "needs": ["route"]},
        },
    )
    execution_id, _, _ = store.create_execution(vid, None)
    run_all(store, execution_id, {"route": Report("failed", error="bad case")})
    assert statuses(store, execution_id) == {
        "route": "failed",
        "left": "skipped",
        "right": "skipped",
    }
    assert store.require_execution(execution_id).status == ExecutionStatus.SUCCEEDED


def test_many_foreach_items_keep_tabs_newlines_backslashes_and_unicode(store: Store) -> None:

    vid = version(
        store,
        {"each": {"type": "noop", "foreach": "{{ input }}", "max_parallel": 80}},
    )
    tricky = [f'row {i}\tcol\nnext \\N back\\slash \u00e9\u20ac "q" {{}}' for i in range(80)]
    execution_id, _, _ = store.create_execution(vid, tricky)
    claim = claim_one(store, execution_id, "each", 1, "w")
    assert claim is not None
    dispatches = complete_one(store, claim, Report("fanout", output=tricky))
    assert sorted(d.item for d in dispatches if d.item is not None) == list(range(80))
    for index in (0, 41, 79):
        item = store.claim_item(execution_id, "each", 1, index, "w")
        assert item is not None
        assert item.item_value == tricky[index]


def test_the_model_cache_keeps_recent_versions_within_its_node_budget(store: Store) -> None:
    from spane_cli.store.versions import VersionCache

    nodes = {f"n{i}": {"type": "noop"} for i in range(3)}
    first, second, third = (version(store, nodes, name=f"cache-{i}") for i in range(3))
    cache = VersionCache(max_nodes=6)
    cache.get(first)
    cache.get(second)
    assert first in cache and second in cache
    cache.get(third)  # 9 nodes > 6: the least recently used goes
    assert first not in cache and second in cache and third in cache
    assert list(cache.get(first).workflow.nodes) == ["n0", "n1", "n2"]  # rebuilt on demand


def test_claim_nodes_claims_the_fresh_ones_together_and_leaves_out_the_stale(store: Store) -> None:
    vid = version(store, {name: {"type": "noop"} for name in ("a", "b", "c")})
    execution_id, _, _ = store.create_execution(vid, None)
    claims = store.claim_nodes(
        [(execution_id, "a", 1), (execution_id, "b", 2), (execution_id, "c", 1)], "w"
    )
    assert [c.node_id for c in claims] == ["a", "c"]  # b's attempt 2 was never queued
    assert statuses(store, execution_id) == {"a": "running", "b": "queued", "c": "running"}
    assert store.claim_nodes([(execution_id, "a", 1)], "w2") == []  # claimed once only


def test_claim_nodes_across_executions_hands_each_child_its_parents_outputs(
    store: Store,
) -> None:
    nodes: dict[str, Any] = {"root": {"type": "noop"}}
    nodes.update({f"c{i}": {"type": "noop", "needs": ["root"]} for i in range(3)})
    vid = version(store, nodes)
    running, _, _ = store.create_execution(vid, None)
    paused, _, _ = store.create_execution(vid, None)
    for execution_id in (running, paused):
        root = claim_one(store, execution_id, "root", 1, "w")
        assert root is not None
        complete_one(store, root, Report("succeeded", output={"rows": 7}))
    store.set_paused(paused, True)
    wanted = [(paused, "c0", 1), (running, "c2", 1), (running, "c0", 1), (running, "c2", 1)]
    claims = store.claim_nodes(wanted, "w")
    assert [(c.execution_id, c.node_id) for c in claims] == [(running, "c2"), (running, "c0")]
    assert all(c.parent_outputs == {"root": {"rows": 7}} for c in claims)
    mine = Outbox.execution_id.in_([running, paused])
    left = {(r.execution_id, r.node_id) for r in Outbox.select().where(mine)}
    assert left == {(running, "c1"), (paused, "c0"), (paused, "c1"), (paused, "c2")}
    started = Event.select().where((Event.execution_id == running) & (Event.type == "node.started"))
    assert sorted(e.node_id for e in started) == ["c0", "c2", "root"]  # one event per claim


def test_complete_nodes_stores_alike_and_different_outcomes_of_one_batch(store: Store) -> None:
    nodes: dict[str, Any] = {name: {"type": "noop"} for name in ("a", "b", "c", "d")}
    nodes["after_c"] = {"type": "noop", "needs": ["c"]}
    vid = version(store, nodes)
    execution_id, _, _ = store.create_execution(vid, None)
    a, b, c, d = store.claim_nodes([(execution_id, n, 1) for n in ("a", "b", "c", "d")], "w")
    store.complete_nodes(
        [(a, Report("succeeded", output={})), (b, Report("succeeded", output={})),
         (c, Report("failed", error="boom")), (d, Report("succeeded", output={"n": 1}))],
    )  # fmt: skip
    assert statuses(store, execution_id) == {
        "a": "succeeded", "b": "succeeded", "c": "failed", "d": "succeeded",
        "after_c": "upstream_failed",
    }  # fmt: skip
    rows = NodeRun.select().where(
        (NodeRun.execution == execution_id) & (NodeRun.status == "succeeded")
    )
    outputs = {r.node_id: r.output for r in rows}
    assert outputs == {"a": {}, "b": {}, "d": {"n": 1}}
    assert store.require_execution(execution_id).status == ExecutionStatus.FAILED


def test_complete_nodes_counts_parents_down_together_and_skips_a_stale_report(
    store: Store,
) -> None:
    nodes: dict[str, Any] = {name: {"type": "noop"} for name in ("a", "b", "c")}
    nodes["join"] = {"type": "noop", "needs": ["a", "b", "c"]}
    vid = version(store, nodes)
    execution_id, _, _ = store.create_execution(vid, None)
    claims = store.claim_nodes([(execution_id, n, 1) for n in ("a", "b", "c")], "w")
    stale = store.claim_nodes([(execution_id, "a", 1)], "w")  # already running: no claim
    assert stale == []
    first, second, third = claims
    complete_one(store, first, Report("succeeded", output=1))
    dispatches, follow = store.complete_nodes(
        [(first, Report("succeeded", output=99)), (second, Report("succeeded", output=2)),
         (third, Report("succeeded", output=3))],
    )  # fmt: skip
    assert follow is None
    assert [(d.node_id, d.attempt) for d in dispatches] == [("join", 1)]
    join = claim_one(store, execution_id, "join", 1, "w")
    assert join is not None
    assert join.parent_outputs == {"a": 1, "b": 2, "c": 3}  # the stale report changed nothing
    complete_one(store, join, Report("succeeded"))
    assert store.require_execution(execution_id).status == ExecutionStatus.SUCCEEDED


def test_nul_characters_in_what_a_node_reports_are_stored(store: Store) -> None:
    from spane_cli.text import NUL_REPLACEMENT

    vid = version(store, {"a": {"type": "noop"}, "b": {"type": "noop"}})
    execution_id, _, _ = store.create_execution(vid, None)
    nul = "before\x00after"
    run_all(
        store,
        execution_id,
        {
            "a": Report("failed", error=nul, logs=nul),
            "b": Report("succeeded", output={"stdout": nul}, logs=nul),
        },
    )
    assert statuses(store, execution_id) == {"a": "failed", "b": "succeeded"}
    stored = {row.node_id: row for row in NodeRun.select().where(NodeRun.execution == execution_id)}
    assert stored["a"].error == f"before{NUL_REPLACEMENT}after"
    assert stored["b"].output == {"stdout": nul}  # JSON keeps it, escaped
