"""A node's priority rides on every job the store hands out for it: entry nodes, children,
retries (at once and woken by the timer), `spane retry`, `dlq replay`, `resume`, the
reconciler's re-sends from the outbox, a lost worker's nodes, foreach items, pool waiters."""

from __future__ import annotations

import uuid
from typing import Any

from store_steps import claim_one, complete_one

from spane_cli.store.models import DeadLetter
from spane_cli.store.records import Dispatch, Report
from spane_cli.store.store import Store
from spane_cli.store.versions import register_version
from spane_cli.workflow.model import build_workflow


def version(store: Store, nodes: dict[str, Any], **top: Any) -> int:
    name = f"prio-{uuid.uuid4().hex[:10]}"
    data = {"version": 1, "name": name, "nodes": nodes, **top}
    return int(register_version(store.database, name, data, {}).id)


def priorities(dispatches: list[Dispatch], execution_id: str) -> dict[str, int]:
    return {
        d.node_id if d.item is None else f"{d.node_id}[{d.item}]": d.priority
        for d in dispatches
        if d.execution_id == execution_id
    }


def test_a_node_priority_wins_over_defaults_and_the_workflow_level() -> None:
    workflow = build_workflow(
        {
            "version": 1,
            "name": "levels",
            "priority": 1,
            "defaults": {"priority": 2},
            "nodes": {"own": {"type": "noop", "priority": -4}, "from_defaults": {"type": "noop"}},
        }
    )
    assert workflow.nodes["own"].priority == -4
    assert workflow.nodes["from_defaults"].priority == 2
    top_only = build_workflow(
        {"version": 1, "name": "top", "priority": 7, "nodes": {"a": {"type": "noop"}}}
    )
    assert top_only.nodes["a"].priority == 7
    plain = build_workflow({"version": 1, "name": "plain", "nodes": {"a": {"type": "noop"}}})
    assert plain.nodes["a"].priority == 0


def test_entry_nodes_and_children_carry_their_own_priority(store: Store) -> None:
    version_id = version(
        store,
        {"a": {"type": "noop"}, "b": {"type": "noop", "needs": ["a"], "priority": 9}},
        priority=3,
    )
    execution_id, _, entry = store.create_execution(version_id, {})
    assert priorities(entry, execution_id) == {"a": 3}
    claim = claim_one(store, execution_id, "a", 1, "w")
    assert claim is not None
    assert priorities(complete_one(store, claim, Report("succeeded")), execution_id) == {"b": 9}


def test_retries_keep_the_priority_at_once_and_from_the_timer(store: Store) -> None:
    version_id = version(
        store,
        {
            "now": {"type": "noop", "retry": {"attempts": 2}},
            "later": {"type": "noop", "retry": {"attempts": 2, "delay": "10s"}},
        },
        defaults={"priority": 5},
    )
    execution_id, _, _ = store.create_execution(version_id, {}, now=1000.0)
    at_once = claim_one(store, execution_id, "now", 1, "w", now=1001.0)
    timed = claim_one(store, execution_id, "later", 1, "w", now=1001.0)
    assert at_once is not None and timed is not None
    failed = Report("failed", error="boom")
    assert priorities(complete_one(store, at_once, failed, now=1002.0), execution_id) == {"now": 5}
    assert complete_one(store, timed, failed, now=1002.0) == []
    assert priorities(store.wake_due(now=1013.0), execution_id) == {"later": 5}


def test_spane_retry_and_dlq_replay_keep_the_priority(store: Store) -> None:
    version_id = version(store, {"a": {"type": "noop", "priority": -2}})
    execution_id, _, _ = store.create_execution(version_id, {})
    claim = claim_one(store, execution_id, "a", 1, "w")
    assert claim is not None
    complete_one(store, claim, Report("failed", error="down"))
    assert priorities(store.retry_execution(execution_id), execution_id) == {"a": -2}
    again = claim_one(store, execution_id, "a", 2, "w")
    assert again is not None
    complete_one(store, again, Report("failed", error="down again"))
    letter = (
        DeadLetter.select()
        .where((DeadLetter.execution_id == execution_id) & DeadLetter.replayed_at.is_null())
        .get()
    )
    assert priorities(store.replay_dead_letter(letter.id), execution_id) == {"a": -2}


def test_resume_and_the_reconciler_resend_from_the_outbox_with_the_priority(
    store: Store,
) -> None:
    version_id = version(store, {"a": {"type": "noop", "priority": 4}})
    execution_id, _, _ = store.create_execution(version_id, {}, now=1000.0)
    store.set_paused(execution_id, True)
    assert priorities(store.set_paused(execution_id, False), execution_id) == {"a": 4}
    rows = [
        d for d in store.pending_dispatches(older_than=2000.0) if d.execution_id == execution_id
    ]
    assert priorities(store.with_priorities(rows), execution_id) == {"a": 4}


def test_a_lost_worker_node_goes_back_with_its_priority(store: Store) -> None:
    version_id = version(store, {"a": {"type": "noop", "priority": 6}})
    execution_id, _, _ = store.create_execution(version_id, {}, now=1000.0)
    assert claim_one(store, execution_id, "a", 1, "gone~1", now=1001.0) is not None
    recovered = store.recover_lost(alive=(), older_than=1100.0, now=1200.0)
    assert priorities(recovered, execution_id) == {"a": 6}


def test_foreach_items_carry_the_priority_and_so_do_their_retries(store: Store) -> None:
    version_id = version(
        store,
        {
            "each": {
                "type": "noop",
                "foreach": [1, 2],
                "max_parallel": 1,
                "priority": 8,
                "retry": {"attempts": 2},
            }
        },
    )
    execution_id, _, _ = store.create_execution(version_id, {})
    claim = claim_one(store, execution_id, "each", 1, "w")
    assert claim is not None
    fanout = complete_one(store, claim, Report("fanout", output=[1, 2]))
    assert priorities(fanout, execution_id) == {"each[0]": 8}
    item = store.claim_item(execution_id, "each", 1, 0, "w")
    assert item is not None
    assert priorities(store.complete_item(item, Report("failed", error="x")), execution_id) == {
        "each[0]": 8
    }
    again = store.claim_item(execution_id, "each", 2, 0, "w")
    assert again is not None
    assert priorities(store.complete_item(again, Report("succeeded")), execution_id) == {
        "each[1]": 8
    }


def test_a_pool_waiter_is_woken_with_its_priority(store: Store) -> None:
    pool = f"prio-{uuid.uuid4().hex[:8]}"
    store.set_pool_size(pool, 1)
    version_id = version(store, {"a": {"type": "noop", "pool": pool, "priority": 2}})
    first, _, _ = store.create_execution(version_id, {})
    second, _, _ = store.create_execution(version_id, {})
    holder = claim_one(store, first, "a", 1, "w")
    assert holder is not None
    assert claim_one(store, second, "a", 1, "w") is None  # waits for the slot
    assert priorities(complete_one(store, holder, Report("succeeded")), second) == {"a": 2}
