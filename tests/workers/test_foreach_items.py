"""Foreach items as jobs of their own: spread over workers, max_parallel, retried, recovered."""

from __future__ import annotations

import os
import signal
from typing import Any

from cluster_support import FAST_RECOVERY, Cluster, flow, poll


def item_rows(cluster: Cluster, execution_id: str) -> list[tuple[Any, ...]]:
    """(item_index, status, attempt, worker, started_at, finished_at) of each item."""
    return cluster.query(
        "SELECT item_index, status, attempt, worker, started_at, finished_at FROM node_item"
        " WHERE execution_id = %s ORDER BY item_index",
        (execution_id,),
    )


def test_items_spread_over_workers_within_max_parallel(cluster: Cluster) -> None:
    cluster.start_worker("--concurrency", "2")
    # Both before the items exist: on a busy machine one could start after the other ran all.
    poll(lambda: len(cluster.live_workers()) == 2, what="two workers")
    execution_id = cluster.submit(
        flow(
            "spread",
            "  gen: {type: transform, config: {output: [1, 2, 3, 4, 5, 6, 7, 8]}}\n"
            "  each:\n"
            "    type: shell\n"
            "    needs: [gen]\n"
            "    foreach: '{{ parents }}'\n"
            "    max_parallel: 3\n"
            "    config: {run: 'sleep 0.25; echo $(({{ item }} * 10))', parse: json}\n"
            "  total:\n"
            "    type: transform\n"
            "    needs: [each]\n"
            "    config: {output: '{{ parents | map(attribute=\"json\") | sum }}'}\n",
        )
    )
    poll(lambda: cluster.status(execution_id) == "succeeded", 60, "the execution to finish")
    execution = cluster.get(execution_id)
    assert execution["nodes"]["each"]["items"] == {"total": 8, "done": 8}
    assert [o["json"] for o in execution["nodes"]["each"]["output"]] == [
        10,
        20,
        30,
        40,
        50,
        60,
        70,
        80,
    ]
    assert execution["nodes"]["total"]["output"] == 360
    rows = item_rows(cluster, execution_id)
    assert len({worker for _, _, _, worker, _, _ in rows}) == 2
    # Never more than max_parallel items running at the same moment.
    for _, _, _, _, started, _ in rows:
        overlapping = sum(1 for r in rows if r[4] <= started < r[5])
        assert overlapping <= 3


def test_a_flaky_item_is_retried_alone_and_a_failing_one_fails_the_node(
    cluster: Cluster, tmp_path
) -> None:
    marker = tmp_path / "tries"
    execution_id = cluster.submit(
        flow(
            "flaky-items",
            "  each:\n"
            "    type: shell\n"
            "    foreach: [ok, flaky, broken]\n"
            "    retry: {attempts: 2}\n"
            "    config:\n"
            f"      run: |\n"
            f"        case {{{{ item }}}} in\n"
            f"          ok) exit 0 ;;\n"
            f"          flaky) [ -f {marker} ] && exit 0; touch {marker}; exit 1 ;;\n"
            f"          broken) echo nope >&2; exit 4 ;;\n"
            f"        esac\n"
            "  after: {type: noop, needs: [each]}\n",
        )
    )
    cluster.start_worker()
    poll(lambda: cluster.status(execution_id) == "failed", 60, "the execution to fail")
    attempts = {index: attempt for index, _, attempt, *_ in item_rows(cluster, execution_id)}
    assert attempts == {0: 1, 1: 2, 2: 2}
    execution = cluster.get(execution_id)
    assert execution["nodes"]["each"]["status"] == "failed"
    assert execution["nodes"]["each"]["error"].startswith("item 2 failed: exit code 4: nope")
    assert execution["nodes"]["after"]["status"] == "upstream_failed"


def test_items_of_a_killed_worker_run_again(cluster: Cluster) -> None:
    killed = cluster.gate("killed")  # items started before the kill hold until it is done
    execution_id = cluster.submit(
        flow(
            "killed-items",
            f"  each: {{type: shell, foreach: [1, 2, 3, 4], config: {{run: '{killed.wait}'}}}}\n",
        )
    )
    first = cluster.start_worker("--concurrency", "2", env=FAST_RECOVERY)
    poll(
        lambda: any(status == "running" for _, status, *_ in item_rows(cluster, execution_id)),
        what="an item to run",
    )
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(timeout=10)
    killed.open()
    cluster.start_worker("--concurrency", "2", env=FAST_RECOVERY)
    poll(lambda: cluster.status(execution_id) == "succeeded", 60, "recovery")
    assert {attempt for _, _, attempt, *_ in item_rows(cluster, execution_id)} == {1}


def test_replaying_a_failed_foreach_runs_its_items_again(cluster: Cluster, tmp_path) -> None:
    import json

    marker = tmp_path / "fixed"
    execution_id = cluster.submit(
        flow(
            "replayed-items",
            f"  each: {{type: shell, foreach: [a, b], config: {{run: 'test -f {marker}'}}}}\n"
            "  after: {type: noop, needs: [each]}\n",
        )
    )
    cluster.start_worker()
    poll(lambda: cluster.status(execution_id) == "failed", 60, "the failure")
    assert cluster.get(execution_id)["nodes"]["each"]["items"] == {"total": 2, "done": 0}
    letters = json.loads(cluster.spane("dlq", "list", "-o", "json").stdout)
    marker.write_text("ok")
    assert cluster.spane("dlq", "replay", str(letters[0]["id"])).returncode == 0
    poll(lambda: cluster.status(execution_id) == "succeeded", 60, "the replayed run")
    execution = cluster.get(execution_id)
    assert execution["nodes"]["each"]["items"] == {"total": 2, "done": 2}
    assert execution["nodes"]["after"]["status"] == "succeeded"
