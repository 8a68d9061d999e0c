"""Trigger rules and branches, exit handlers with fail_fast, and retry.when, under real
`spane worker` processes on PostgreSQL."""

from __future__ import annotations

from cluster_support import Cluster, flow, poll


def test_branch_and_trigger_rules_under_workers(cluster: Cluster) -> None:
    cluster.start_worker("--concurrency", "2")
    execution_id = cluster.submit(
        flow(
            "rules-workers",
            "  route: {type: branch, config: {cases: [{when: 'true', next: [a]}], default: [b]}}\n"
            "  a: {type: shell, needs: [route], config: {run: 'exit 1'}}\n"
            "  b: {type: noop, needs: [route]}\n"
            "  below_a: {type: noop, needs: [route, a], trigger: one_failed}\n"
            "  join: {type: noop, needs: [a, b], trigger: none_failed_min_one_success}\n"
            "  any: {type: noop, needs: [a, b], trigger: one_done}\n"
            "  only: {type: noop, needs: [a, b], trigger: one_success}\n"
            "  skipped_all: {type: noop, needs: [b], trigger: all_skipped}\n",
        )
    )
    poll(lambda: cluster.status(execution_id) == "failed", 60, "the execution to fail")
    assert cluster.node_statuses(execution_id) == {
        "route": "succeeded",
        "a": "failed",
        "b": "skipped",
        "below_a": "succeeded",
        "join": "upstream_failed",
        "any": "succeeded",
        "only": "upstream_failed",
        "skipped_all": "succeeded",
    }


def test_exit_handler_runs_after_fail_fast_under_workers(cluster: Cluster) -> None:
    cluster.start_worker("--concurrency", "2")
    cluster.start_worker("--concurrency", "2")
    gate = cluster.gate("slow")
    wait_for_gate = f"while [ ! -f {gate.path} ]; do sleep 0.05; done"
    execution_id = cluster.submit(
        "version: 1\nname: fast-workers\nfail_fast: true\nnodes:\n"
        f"  slow: {{type: shell, config: {{run: '{wait_for_gate}'}}}}\n"
        "  after_slow: {type: noop, needs: [slow]}\n"
        "  breaks: {type: fail, config: {message: 'no'}}\n"
        "  notify:\n"
        "    type: transform\n"
        "    on_exit: true\n"
        "    config: {output: {status: '{{ workflow.status }}', failed: "
        "\"{{ workflow.failures | map(attribute='node') | list }}\"}}\n"
    )
    poll(lambda: cluster.node_status(execution_id, "breaks") == "failed", 60, "breaks to fail")
    assert cluster.node_status(execution_id, "slow") == "running"
    assert cluster.node_status(execution_id, "after_slow") == "skipped"
    assert cluster.node_status(execution_id, "notify") == "pending"
    gate.open()
    poll(lambda: cluster.status(execution_id) == "failed", 60, "the execution to end")
    execution = cluster.get(execution_id)
    assert execution["nodes"]["slow"]["status"] == "succeeded"
    assert execution["nodes"]["notify"]["output"] == {"status": "failed", "failed": ["breaks"]}


def test_retry_when_under_workers(cluster: Cluster, tmp_path) -> None:
    cluster.start_worker("--concurrency", "2")
    execution_id = cluster.submit(
        flow(
            "retry-when-workers",
            "  transient:\n"
            "    type: shell\n"
            "    retry: {attempts: 5, delay: 100ms, when: 'exit_code == 75'}\n"
            "    config: {run: 'test {{ attempt }} -ge 3 || exit 75'}\n"
            "  permanent:\n"
            "    type: shell\n"
            "    retry: {attempts: 5, when: 'exit_code == 75'}\n"
            "    config: {run: 'exit 9'}\n",
        )
    )
    poll(lambda: cluster.status(execution_id) == "failed", 60, "the execution to end")
    nodes = cluster.get(execution_id)["nodes"]
    assert (nodes["transient"]["status"], nodes["transient"]["attempts"]) == ("succeeded", 3)
    assert (nodes["permanent"]["status"], nodes["permanent"]["attempts"]) == ("failed", 1)
