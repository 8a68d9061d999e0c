"""`spane get` says, for each node that is not running, what it waits for."""

from __future__ import annotations

from cluster_support import Cluster, flow, poll


def lines_of(cluster: Cluster, execution_id: str) -> dict[str, str]:
    """The `get` table's line of each node."""
    shown = cluster.spane("get", execution_id).stdout.splitlines()
    return {line.split()[0]: line for line in shown if line.strip()}


def line_of(cluster: Cluster, execution_id: str, node_id: str) -> str:
    return lines_of(cluster, execution_id).get(node_id, "")


def test_get_names_what_each_waiting_node_waits_for(cluster: Cluster) -> None:
    hold = cluster.gate("hold")
    execution_id = cluster.submit(
        flow(
            "waits",
            f"  first: {{type: shell, config: {{run: '{hold.wait}'}}}}\n"
            "  second: {type: noop, needs: [first]}\n"
            "  gpu: {type: noop, queue: gpu}\n"
            "  again: {type: fail, retry: {attempts: 2, delay: 1h}, config: {message: nope}}\n"
            "  nap: {type: delay, config: {duration: 1h}}\n"
            "  each:\n"
            "    type: shell\n"
            "    foreach: [1, 2, 3]\n"
            "    max_parallel: 1\n"
            f"    config: {{run: '{hold.wait}'}}\n",
        )
    )
    cluster.start_worker("--concurrency", "3")
    poll(lambda: cluster.node_status(execution_id, "again") == "retrying", what="the retry")
    poll(lambda: cluster.node_status(execution_id, "nap") == "waiting", what="the delay")
    poll(lambda: "full" in line_of(cluster, execution_id, "each"), what="a full max_parallel")
    lines = lines_of(cluster, execution_id)
    assert "parents first" in lines["second"]
    assert "no live worker serves queue gpu" in lines["gpu"]
    assert "its retry, due at 20" in lines["again"]
    assert "its delay, until 20" in lines["nap"]
    assert "items 0/3, max_parallel 1 full" in lines["each"]
    cluster.spane("pause", execution_id)
    hold.open()
    poll(lambda: cluster.node_status(execution_id, "second") != "pending", what="second")
    poll(
        lambda: "the execution to be resumed" in line_of(cluster, execution_id, "second"),
        what="the pause shown",
    )
    cluster.spane("cancel", execution_id)
