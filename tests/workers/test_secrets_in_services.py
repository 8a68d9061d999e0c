"""Under real workers, a secret used everywhere a template can go is in no PostgreSQL row,
no Redis key and no worker log line."""

from __future__ import annotations

from typing import Any

import redis
from cluster_support import Cluster, poll
from secret_flows import CHILD, PARENT, SECRET


def _redis_values(url: str) -> list[tuple[str, Any]]:
    client = redis.Redis.from_url(url)
    values: list[tuple[str, Any]] = []
    for key in client.scan_iter(count=1000):
        kind = client.type(key).decode()
        readers = {
            "string": client.get,
            "hash": client.hgetall,
            "list": lambda k: client.lrange(k, 0, -1),
            "set": client.smembers,
            "zset": lambda k: client.zrange(k, 0, -1, withscores=True),
            "stream": lambda k: client.xrange(k),
        }
        values.append((key.decode(), readers[kind](key) if kind in readers else kind))
    client.close()
    return values


def _database_rows(cluster: Cluster) -> list[tuple[str, str]]:
    tables = cluster.query(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
    )
    rows: list[tuple[str, str]] = []
    for (table,) in tables:
        for (text,) in cluster.query(f'SELECT t::text FROM "{table}" t'):
            rows.append((table, text))
    return rows


def test_a_secret_used_everywhere_is_in_no_row_key_or_log(cluster: Cluster) -> None:
    (cluster.tmp_path / "child.yaml").write_text(CHILD)
    path = cluster.tmp_path / "flow.yaml"
    path.write_text(PARENT)
    submitted = cluster.spane("run", "-q", str(path))
    assert submitted.returncode == 0, submitted.stderr
    execution_id = submitted.stdout.strip()
    cluster.start_worker("--concurrency", "2", env={"SPANE_SECRET_TOKEN": SECRET})
    poll(lambda: cluster.status(execution_id) == "failed", 60, "the run to end")  # on purpose

    stored = _redis_values(cluster.redis_url)
    assert stored  # queues, workers, jobs: the look is not at an empty server
    in_redis = [(key, value) for key, value in stored
                if SECRET.encode() in repr(value).encode()]  # fmt: skip
    assert in_redis == []
    rows = _database_rows(cluster)
    assert any("***" in text for table, text in rows if table == "node_item")  # it is masked
    assert [row for row in rows if SECRET in row[1]] == []
    assert SECRET not in cluster.logs()
    for command in (("get", execution_id), ("logs", execution_id), ("events", execution_id)):
        shown = cluster.spane(*command)
        assert SECRET not in shown.stdout + shown.stderr, command
