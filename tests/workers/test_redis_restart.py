"""A Redis server that dies and comes back empty: workers ride it out, nothing is lost.

The server is the test's own (`private_redis`), so killing it disturbs no other test."""

from __future__ import annotations

from pathlib import Path

from cluster_support import Cluster, PrivateRedis, flow, poll


def test_a_redis_restart_mid_run_loses_nothing(
    fresh_postgres_url: str, private_redis: PrivateRedis, tmp_path: Path
) -> None:
    cluster = Cluster(fresh_postgres_url, private_redis.url(), tmp_path)
    try:
        first = cluster.gate("first")
        children = "".join(
            f"  c{i}: {{type: shell, needs: [first], config: {{run: 'sleep 0.1'}}}}\n"
            for i in range(4)
        )
        execution_id = cluster.submit(
            flow(
                "restarted",
                f"  first: {{type: shell, config: {{run: '{first.wait}'}}}}\n" + children,
            )
        )
        cluster.start_worker()
        poll(lambda: cluster.node_status(execution_id, "first") == "running", what="first")
        private_redis.kill()
        private_redis.start()  # same socket, empty: every queued job is gone
        first.open()  # its children are enqueued on the new, empty server
        poll(lambda: cluster.status(execution_id) == "succeeded", 60, "the execution to finish")
        statuses = cluster.node_statuses(execution_id)
        assert set(statuses.values()) == {"succeeded"}
    finally:
        cluster.close()
    assert "Traceback" not in cluster.logs()


def test_a_redis_restart_while_retries_and_delay_items_wait_loses_nothing(
    fresh_postgres_url: str, private_redis: PrivateRedis, tmp_path: Path
) -> None:
    cluster = Cluster(fresh_postgres_url, private_redis.url(), tmp_path)
    marker = tmp_path / "tried"
    try:
        execution_id = cluster.submit(
            flow(
                "timers-restarted",
                "  flaky:\n"
                "    type: shell\n"
                "    retry: {attempts: 2, delay: 2s}\n"
                f"    config: {{run: '[ -e {marker} ] || {{ touch {marker}; exit 1; }}'}}\n"
                "  naps: {type: delay, foreach: [2s, 3s], config: {duration: '{{ item }}'}}\n",
            )
        )
        cluster.start_worker()
        poll(
            lambda: (
                cluster.node_status(execution_id, "flaky") == "retrying"
                and cluster.node_status(execution_id, "naps") == "waiting"
            ),
            30,
            "the retry and the delays to wait",
        )
        private_redis.kill()
        private_redis.start()  # the timer token and any job are gone; the database has it all
        poll(lambda: cluster.status(execution_id) == "succeeded", 60, "the execution to finish")
        assert cluster.get(execution_id)["nodes"]["flaky"]["attempts"] == 2
    finally:
        cluster.close()
    assert "Traceback" not in cluster.logs()
