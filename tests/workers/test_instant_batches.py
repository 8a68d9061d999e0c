"""A worker claims several instant nodes per transaction, and hands slow ones back."""

from __future__ import annotations

from pathlib import Path

from cluster_support import flow
from redis import Redis

from spane_cli.config import Settings
from spane_cli.engine.connections import open_store
from spane_cli.engine.dispatch import Dispatcher, job_id
from spane_cli.engine.submit import submit
from spane_cli.engine.worker import CLAIM_BATCH, NodeWorker, WorkerOptions
from spane_cli.store.models import NodeRun


def test_instant_nodes_run_together_and_a_slow_one_goes_back_to_the_head(
    fresh_postgres_url: str, redis_url: str, tmp_path: Path
) -> None:
    nodes = (
        "  a: {type: noop}\n"
        "  b: {type: transform, config: {output: '{{ 1 + 1 }}'}}\n"
        "  slow: {type: shell, config: {run: 'true'}}\n"
        "  c: {type: noop}\n"
    )
    path = tmp_path / "mixed.yaml"
    path.write_text(flow("mixed", nodes))
    store = open_store(Settings(db_url=fresh_postgres_url, redis_url=redis_url))
    connection = Redis.from_url(redis_url)
    execution_id, _, dispatches = submit(store, str(path), {})
    Dispatcher(connection).enqueue(dispatches)
    assert CLAIM_BATCH >= 4

    worker = NodeWorker(store, connection, WorkerOptions(name="batch-worker"))
    assert worker._step() is False  # one step: the first job and what came with it

    statuses = {
        row.node_id: row.status for row in NodeRun.select().where(NodeRun.execution == execution_id)
    }
    assert statuses == {"a": "succeeded", "b": "succeeded", "slow": "queued", "c": "succeeded"}
    slow = next(d for d in dispatches if d.node_id == "slow")
    assert connection.lrange("rq:queue:default", 0, -1) == [job_id(slow).encode()]
    assert connection.exists(f"rq:job:{job_id(slow)}")  # a whole job again, not just an id
    store.close()
