"""Pool slots counted in the database: claimers racing for the last slot, waiters woken in
order, slots coming back from lost workers and cancelled executions; on SQLite and
PostgreSQL."""

from __future__ import annotations

from functools import partial
from typing import Any

import pytest
from store_steps import claim_one, complete_one
from test_concurrent_transitions import at_once, version

from spane_cli.store.models import Execution, NodeRun, Outbox, Pool, PoolSlot, PoolWaiter
from spane_cli.store.pool_views import pool_list, pool_waits
from spane_cli.store.records import Report
from spane_cli.store.store import Store
from spane_cli.store.versions import register_version
from spane_cli.store.waits import waiting_reasons


def executions(store: Store, count: int, node: dict[str, Any], name: str = "pooled") -> list[str]:
    version_id = version(store, {"work": {"type": "noop", **node}}, name)
    return [store.create_execution(version_id, {})[0] for _ in range(count)]


def statuses(execution_ids: list[str]) -> list[str]:
    rows = NodeRun.select().where(NodeRun.execution.in_(execution_ids))
    return sorted(row.status for row in rows)


def held(pool: str) -> int:
    return int(PoolSlot.select().where(PoolSlot.pool == pool).count())


def test_concurrent_claimers_never_take_more_slots_than_the_pool_has(store: Store) -> None:
    store.set_pool_size("warehouse", 2)
    for round_number in range(3):
        ids = executions(store, 6, {"pool": "warehouse"})
        claims = at_once(*(partial(claim_one, store, e, "work", 1, f"w{e[:4]}") for e in ids))
        taken = [c for c in claims if c is not None]
        assert not [c for c in claims if isinstance(c, Exception)], claims
        assert len(taken) == 2, (round_number, claims)
        assert held("warehouse") == 2
        assert Pool.get_by_id("warehouse").held == 2
        assert statuses(ids) == ["queued"] * 4 + ["running"] * 2
        # The four that wait hold no job: nothing re-sends them until a slot frees.
        waiting = [e for e in ids if e not in {c.execution_id for c in taken}]
        assert not Outbox.select().where(Outbox.execution_id.in_(waiting)).exists()
        assert PoolWaiter.select().where(PoolWaiter.pool == "warehouse").count() == 4
        for claim in taken:
            complete_one(store, claim, Report("succeeded"))
        # Each freed slot queued one waiter; drain them the way workers would.
        while rows := list(Outbox.select().where(Outbox.execution_id.in_(ids))):
            for row in rows:
                claim = claim_one(store, row.execution_id, row.node_id, row.attempt, "w")
                assert claim is not None
                assert held("warehouse") <= 2
                complete_one(store, claim, Report("succeeded"))
        assert statuses(ids) == ["succeeded"] * 6
        assert held("warehouse") == 0
        assert not PoolWaiter.select().where(PoolWaiter.pool == "warehouse").exists()


def test_a_freed_slot_is_kept_for_the_oldest_waiter(store: Store) -> None:
    store.set_pool_size("deploys", 1)
    first, second, third = executions(store, 3, {"pool": "deploys"})
    holder = claim_one(store, first, "work", 1, "w1", now=100.0)
    assert holder is not None
    assert claim_one(store, second, "work", 1, "w2", now=101.0) is None
    assert claim_one(store, third, "work", 1, "w3", now=102.0) is None
    workflow = store.versions.get(Execution.get_by_id(second).version_id).workflow
    reasons = waiting_reasons(Execution.get_by_id(second), workflow, {"default"})
    assert reasons == {"work": f"pool deploys full (holders: {first[:8]}/work)"}
    dispatches = complete_one(store, holder, Report("succeeded"), now=103.0)
    assert [(d.execution_id, d.node_id) for d in dispatches] == [(second, "work")]
    # A job of the younger waiter that arrives first does not take the slot kept for the older.
    assert claim_one(store, third, "work", 1, "w3", now=104.0) is None
    assert claim_one(store, second, "work", 1, "w2", now=105.0) is not None
    view = next(p for p in pool_list() if p["name"] == "deploys")
    assert [h["execution_id"] for h in view["holders"]] == [second]
    assert [w["execution_id"] for w in view["waiters"]] == [third]


def test_a_size_declared_in_the_file_applies_until_the_cli_sets_one(store: Store) -> None:
    data = {
        "version": 1,
        "name": "declared",
        "pools": {"api": 2},
        "nodes": {"work": {"type": "noop", "pool": "api"}},
    }
    version_id = int(register_version(store.database, "declared", data, {}).id)
    ids = [store.create_execution(version_id, {})[0] for _ in range(3)]
    claims = [claim_one(store, e, "work", 1, "w") for e in ids]
    assert [c is not None for c in claims] == [True, True, False]
    dispatches = store.set_pool_size("api", 3)  # the operator's size wins
    assert [d.execution_id for d in dispatches] == [ids[2]]
    assert claim_one(store, ids[2], "work", 1, "w") is not None
    assert next(p for p in pool_list() if p["name"] == "api")["set_by"] == "cli"
    store.set_pool_size("api", None)
    view = next(p for p in pool_list() if p["name"] == "api")
    assert (view["size"], view["set_by"], len(view["holders"])) == (2, "workflow", 3)


def test_a_mutex_lets_one_node_of_all_executions_run(store: Store) -> None:
    ids = executions(store, 3, {"mutex": "release"}, name="mutexed")
    claims = at_once(*(partial(claim_one, store, e, "work", 1, "w") for e in ids))
    assert len([c for c in claims if c is not None]) == 1, claims
    assert held("release") == 1


def test_a_pool_without_any_size_waits_and_says_so(store: Store) -> None:
    (execution_id,) = executions(store, 1, {"pool": "nosize"})
    assert claim_one(store, execution_id, "work", 1, "w") is None
    assert pool_waits(execution_id) == {"work": "pool nosize has no size (spane pool set nosize N)"}
    dispatches = store.set_pool_size("nosize", 1)
    assert [(d.execution_id, d.node_id) for d in dispatches] == [(execution_id, "work")]
    assert claim_one(store, execution_id, "work", 1, "w") is not None


def test_a_lost_worker_gives_its_slot_back_with_the_node(store: Store) -> None:
    store.set_pool_size("gpu", 1)
    first, second = executions(store, 2, {"pool": "gpu"})
    assert claim_one(store, first, "work", 1, "dead", now=100.0) is not None
    assert claim_one(store, second, "work", 1, "alive", now=101.0) is None
    dispatches = store.release_worker("dead", now=102.0)
    # The lost node is queued again, and the freed slot is kept for the older waiter.
    assert sorted((d.execution_id, d.node_id) for d in dispatches) == sorted(
        [(first, "work"), (second, "work")]
    )
    assert held("gpu") == 0
    assert claim_one(store, first, "work", 1, "alive", now=103.0) is None
    assert claim_one(store, second, "work", 1, "alive", now=104.0) is not None


def test_a_cancelled_holder_and_waiter_are_swept(store: Store) -> None:
    store.set_pool_size("db", 1)
    first, second, third = executions(store, 3, {"pool": "db"})
    assert claim_one(store, first, "work", 1, "w") is not None
    assert claim_one(store, second, "work", 1, "w") is None
    assert claim_one(store, third, "work", 1, "w") is None
    store.cancel(first)
    store.cancel(second)
    # The cancel freed the slot and wrote the next waiter's job to the outbox (the reconciler
    # sends outbox rows whose job is missing); nothing is left for the sweep.
    jobs = Outbox.select().where(Outbox.execution_id.in_([first, second, third]))
    assert [row.execution_id for row in jobs] == [third]
    assert store.sweep_pools() == []
    assert claim_one(store, third, "work", 1, "w") is not None
    assert not PoolWaiter.select().where(PoolWaiter.pool == "db").exists()


def test_nodes_without_a_pool_run_no_pool_statement(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = executions(store, 2, {}, name="plain")
    statements: list[str] = []
    execute = store.database.execute_sql

    def recorded(sql: str, params: Any = None, *args: Any, **kwargs: Any) -> Any:
        statements.append(sql)
        return execute(sql, params, *args, **kwargs)

    monkeypatch.setattr(store.database, "execute_sql", recorded)
    for execution_id in ids:
        claim = claim_one(store, execution_id, "work", 1, "w")
        assert claim is not None
        complete_one(store, claim, Report("succeeded"))
    monkeypatch.undo()
    assert statements  # the claims and completions did run through it
    assert [s for s in statements if "pool" in s.lower()] == []
    assert Execution.get_by_id(ids[1]).status == "succeeded"


def test_max_active_starts_the_waiting_executions_in_creation_order(store: Store) -> None:
    data = {
        "version": 1,
        "name": "one-at-a-time",
        "max_active": 1,
        "nodes": {"a": {"type": "noop"}, "b": {"type": "noop"}},
    }
    version_id = int(register_version(store.database, "one-at-a-time", data, {}).id)
    first, second, third = (
        store.create_execution(version_id, {}, now=100.0 + n)[0] for n in range(3)
    )
    running = [claim_one(store, first, node, 1, "w", now=110.0) for node in ("a", "b")]
    assert all(c is not None for c in running)  # one execution, both of its nodes
    # The youngest asks first; each waits, pending, its nodes queued with no job.
    assert claim_one(store, third, "a", 1, "w", now=111.0) is None
    assert claim_one(store, second, "b", 1, "w", now=112.0) is None
    assert claim_one(store, second, "a", 1, "w", now=112.5) is None
    assert Execution.get_by_id(second).status == "pending"
    workflow = store.versions.get(version_id).workflow
    reason = waiting_reasons(Execution.get_by_id(second), workflow, {"default"})["a"]
    assert reason == f"max_active 1 of workflow one-at-a-time reached (open: {first[:8]})"
    dispatches = complete_one(store, running[0], Report("succeeded"), now=113.0)
    assert dispatches == []  # the first is still open
    dispatches = complete_one(store, running[1], Report("succeeded"), now=114.0)
    assert Execution.get_by_id(first).status == "succeeded"
    # The older of the two waiters gets the slot, with a job for each of its nodes.
    assert sorted((d.execution_id, d.node_id) for d in dispatches) == [
        (second, "a"),
        (second, "b"),
    ]
    assert claim_one(store, third, "a", 1, "w", now=115.0) is None
    assert claim_one(store, second, "b", 1, "w", now=116.0) is not None
    assert claim_one(store, second, "a", 1, "w", now=116.5) is not None
    store.cancel(second, now=117.0)  # a cancel frees the slot too
    assert [(d.execution_id, d.node_id) for d in store.sweep_pools(now=118.0)] == []
    assert claim_one(store, third, "a", 1, "w", now=119.0) is not None


def test_the_sweep_frees_a_slot_whose_node_ended_without_a_report(store: Store) -> None:
    store.set_pool_size("swept", 1)
    first, second = executions(store, 2, {"pool": "swept"})
    assert claim_one(store, first, "work", 1, "w") is not None
    assert claim_one(store, second, "work", 1, "w") is None
    # A row moved by hand (or by a path that records no report): the slot would leak.
    NodeRun.update(status="failed").where(NodeRun.execution == first).execute()
    assert [(d.execution_id, d.node_id) for d in store.sweep_pools()] == [(second, "work")]
    assert Pool.get_by_id("swept").held == 0
    assert claim_one(store, second, "work", 1, "w") is not None
