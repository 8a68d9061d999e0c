"""Real `spane worker` processes: a foreach over sub-workflows (one child execution per item,
max_parallel of them at a time), delay items that hold no worker, retry delays and delays
honoured to +-100 ms, and an execution deadline that fails the nodes it was running."""

from __future__ import annotations

from typing import Any

from cluster_support import Cluster, flow, poll

CHILD = """version: 1
name: child
inputs:
  n: {type: integer, required: true}
  greeting: {type: string, default: hello}
nodes:
  work:
    type: shell
    config:
      run: |
        {wait}
        [ {{ input.n }} -ne 3 ] || exit 7
        echo '{"n": {{ input.n }}, "g": "{{ input.greeting }}"}'
      parse: json
"""
# Slack for one round trip through the database and Redis on a busy two-core machine.
TOLERANCE = 0.1


def write_child(cluster: Cluster, wait: str = "sleep 0.3") -> None:
    (cluster.tmp_path / "child.yaml").write_text(CHILD.replace("{wait}", wait))


def children(cluster: Cluster, parent_id: str) -> list[tuple[Any, ...]]:
    """(status, input, created_at, finished_at) of the child executions, oldest first."""
    return cluster.query(
        "SELECT status, input, created_at, finished_at FROM execution WHERE parent_id = %s"
        " ORDER BY created_at",
        (parent_id,),
    )


def event_times(cluster: Cluster, execution_id: str, node_id: str, kind: str) -> list[float]:
    rows = cluster.query(
        "SELECT created_at FROM event WHERE execution_id = %s AND node_id = %s AND type = %s"
        " ORDER BY id",
        (execution_id, node_id, kind),
    )
    return [float(at) for (at,) in rows]


def test_a_foreach_over_a_sub_workflow_runs_a_child_per_item_within_max_parallel(
    cluster: Cluster,
) -> None:
    write_child(cluster)
    cluster.start_worker("--concurrency", "2")
    execution_id = cluster.submit(
        flow(
            "loop-children",
            "  each:\n"
            "    type: workflow\n"
            "    foreach: [1, 2, 4, 5]\n"
            "    max_parallel: 2\n"
            "    config: {workflow: ./child.yaml, input: {n: '{{ item }}'}}\n",
        )
    )
    poll(lambda: cluster.status(execution_id) == "succeeded", 60, "the parent to succeed")
    each = cluster.get(execution_id)["nodes"]["each"]
    assert [o["work"]["json"] for o in each["output"]] == [
        {"n": n, "g": "hello"} for n in (1, 2, 4, 5)
    ]
    rows = children(cluster, execution_id)
    assert [status for status, *_ in rows] == ["succeeded"] * 4
    for _, _, created, _ in rows:
        assert sum(1 for r in rows if r[2] <= created < r[3]) <= 2


def test_a_failing_child_fails_its_item_and_the_node_after_the_others_end(
    cluster: Cluster,
) -> None:
    write_child(cluster, wait="true")
    cluster.start_worker()
    execution_id = cluster.submit(
        flow(
            "loop-failing-child",
            "  each:\n"
            "    type: workflow\n"
            "    foreach: [3, 4]\n"
            "    config: {workflow: ./child.yaml, input: {n: '{{ item }}'}}\n",
        )
    )
    poll(lambda: cluster.status(execution_id) == "failed", 60, "the parent to fail")
    each = cluster.get(execution_id)["nodes"]["each"]
    assert each["status"] == "failed"
    assert each["error"].startswith("item 0 failed: sub-workflow execution ")
    assert "node 'work' failed: exit code 7" in each["error"]
    assert [status for status, *_ in children(cluster, execution_id)] == ["failed", "succeeded"]


def test_cancelling_the_parent_cancels_the_children_of_its_items(cluster: Cluster) -> None:
    gate = cluster.gate("children")
    write_child(cluster, wait=gate.wait)
    cluster.start_worker("--concurrency", "2")
    execution_id = cluster.submit(
        flow(
            "loop-cancel",
            "  each:\n"
            "    type: workflow\n"
            "    foreach: [1, 2, 4]\n"
            "    max_parallel: 2\n"
            "    config: {workflow: ./child.yaml, input: {n: '{{ item }}'}}\n",
        )
    )
    poll(lambda: len(children(cluster, execution_id)) == 2, 30, "two children started")
    assert cluster.spane("cancel", execution_id).returncode == 0
    poll(
        lambda: [s for s, *_ in children(cluster, execution_id)] == ["cancelled", "cancelled"],
        30,
        "both children cancelled",
    )
    assert cluster.status(execution_id) == "cancelled"
    gate.open()


def test_a_child_past_its_timeout_fails_its_item(cluster: Cluster) -> None:
    gate = cluster.gate("slow-child")
    (cluster.tmp_path / "slow.yaml").write_text(
        "version: 1\nname: slow\ntimeout: 1s\nnodes:\n"
        f"  work: {{type: shell, config: {{run: '{gate.wait}'}}}}\n"
    )
    cluster.start_worker()
    execution_id = cluster.submit(
        flow(
            "loop-slow", "  each: {type: workflow, foreach: [1], config: {workflow: ./slow.yaml}}\n"
        )
    )
    poll(lambda: cluster.status(execution_id) == "failed", 30, "the parent to fail")
    error = cluster.get(execution_id)["nodes"]["each"]["error"]
    assert "failed: execution timed out after 1s: exceeded its deadline" in error
    gate.open()


def test_delay_items_wait_their_own_time_without_holding_the_worker(cluster: Cluster) -> None:
    cluster.start_worker("--concurrency", "1")
    execution_id = cluster.submit(
        flow(
            "loop-delays",
            "  each:\n"
            "    type: delay\n"
            "    foreach: [0.3, 0.6, 0.9]\n"
            "    config: {duration: '{{ item }}'}\n"
            "  meanwhile: {type: shell, config: {run: 'echo ran'}}\n",
        )
    )
    poll(lambda: cluster.status(execution_id) == "succeeded", 30, "the execution to succeed")
    rows = cluster.query(
        "SELECT item_index, started_at, finished_at FROM node_item WHERE execution_id = %s"
        " ORDER BY item_index",
        (execution_id,),
    )
    waited = [finished - started for _, started, finished in rows]
    for expected, actual in zip((0.3, 0.6, 0.9), waited, strict=True):
        assert abs(actual - expected) <= TOLERANCE, waited
    # The one worker slot ran the shell node while every item waited.
    meanwhile = cluster.get(execution_id)["nodes"]["meanwhile"]
    assert meanwhile["status"] == "succeeded"
    ran = cluster.query(
        "SELECT finished_at FROM node_run WHERE execution_id = %s AND node_id = 'meanwhile'",
        (execution_id,),
    )[0][0]
    assert ran < max(finished for _, _, finished in rows)


def test_sub_second_retry_delays_are_honoured(cluster: Cluster) -> None:
    cluster.start_worker()
    execution_id = cluster.submit(
        flow(
            "retry-gaps",
            "  flaky:\n"
            "    type: shell\n"
            "    retry: {attempts: 4, backoff: exponential, delay: 500ms}\n"
            "    config: {run: 'exit 1'}\n",
        )
    )
    poll(lambda: cluster.status(execution_id) == "failed", 30, "the execution to fail")
    failed_at = event_times(cluster, execution_id, "flaky", "node.retrying")
    started_at = event_times(cluster, execution_id, "flaky", "node.started")
    assert len(failed_at) == 3 and len(started_at) == 4
    gaps = [start - failure for failure, start in zip(failed_at, started_at[1:], strict=True)]
    print("retry gaps (failure to next start):", [round(g, 3) for g in gaps])
    for expected, gap in zip((0.5, 1.0, 2.0), gaps, strict=True):
        assert abs(gap - expected) <= TOLERANCE, gaps


def test_an_execution_timeout_fails_the_running_node_at_its_deadline(cluster: Cluster) -> None:
    gate = cluster.gate("deadline")
    # One worker runs the node, the other one (idle) keeps the time.
    cluster.start_worker("--concurrency", "2")
    poll(lambda: len(cluster.live_workers()) == 2, what="two workers")
    execution_id = cluster.submit(
        "version: 1\nname: deadline\ntimeout: 1s\nnodes:\n"
        f"  busy: {{type: shell, config: {{run: '{gate.wait}'}}}}\n"
        "  after: {type: noop, needs: [busy]}\n"
    )
    poll(lambda: cluster.status(execution_id) == "failed", 30, "the execution to fail")
    execution = cluster.get(execution_id)
    assert execution["error"] == "execution timed out after 1s: exceeded its deadline"
    busy = execution["nodes"]["busy"]
    assert busy["status"] == "failed"
    assert busy["error"] == "the execution timed out after 1s: exceeded its deadline"
    assert execution["nodes"]["after"]["status"] == "upstream_failed"
    created, finished = cluster.query(
        "SELECT created_at, finished_at FROM execution WHERE id = %s", (execution_id,)
    )[0]
    assert abs(finished - created - 1.0) <= TOLERANCE
    gate.open()


def test_a_burst_worker_stays_for_items_that_wait_and_then_exits(cluster: Cluster) -> None:
    write_child(cluster, wait="true")
    execution_id = cluster.submit(
        flow(
            "burst-items",
            "  naps: {type: delay, foreach: [300ms, 600ms], config: {duration: '{{ item }}'}}\n"
            "  calls:\n"
            "    type: workflow\n"
            "    needs: [naps]\n"
            "    foreach: [1, 2]\n"
            "    config: {workflow: ./child.yaml, input: {n: '{{ item }}'}}\n",
        )
    )
    worker = cluster.spane("worker", "--burst", timeout=60)
    assert worker.returncode == 0, worker.stderr
    assert cluster.status(execution_id) == "succeeded"
