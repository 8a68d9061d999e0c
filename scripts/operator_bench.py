"""The benchmark as an operator would run it: one `spane worker --concurrency 2`, a 500-child
fan-out and a 50-node chain submitted with `spane run`, timed from `created_at` to
`finished_at` of `spane get -o json`, against 2 RQ SimpleWorkers draining 500 jobs and an RQ
`depends_on` chain of 50 in the same run.

    python scripts/operator_bench.py --db postgresql://postgres@127.0.0.1/spane_op \\
        --redis redis://127.0.0.1:6379/10

The database must exist and be empty; the Redis db is flushed before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from redis import Redis

from spane_cli.bench.baseline import depends_on_chain, drain_jobs
from spane_cli.bench.workloads import chain, fan_out

SPANE = [sys.executable, "-m", "spane_cli"]


def _seconds(env: dict[str, str], workflow: str, folder: Path) -> float:
    path = folder / "flow.yaml"
    path.write_text(workflow.replace("queue: spane-bench", "queue: default"))
    run = subprocess.run([*SPANE, "run", "-q", str(path)], env=env, capture_output=True, text=True)
    if run.returncode != 0:
        raise SystemExit(f"spane run failed: {run.stderr}")
    execution_id = run.stdout.strip()
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        got = subprocess.run(
            [*SPANE, "get", execution_id, "-o", "json"], env=env, capture_output=True, text=True
        )
        execution = json.loads(got.stdout)
        if execution["status"] not in ("pending", "running"):
            if execution["status"] != "succeeded":
                raise SystemExit(f"{execution_id} ended {execution['status']}")
            start = datetime.fromisoformat(execution["created_at"])
            end = datetime.fromisoformat(execution["finished_at"])
            return (end - start).total_seconds()
        time.sleep(0.2)
    raise SystemExit(f"{execution_id} did not finish in 300 s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", required=True)
    parser.add_argument("--redis", required=True)
    args = parser.parse_args()
    connection = Redis.from_url(args.redis)
    connection.flushdb()
    env = {**os.environ, "SPANE_DATABASE_URL": args.db, "SPANE_REDIS_URL": args.redis}
    rq_fan = drain_jobs(connection, args.redis, 500, 2)
    rq_chain = depends_on_chain(connection, args.redis, 50, 2)
    subprocess.run([*SPANE, "db", "migrate"], env=env, check=True, capture_output=True)
    worker = subprocess.Popen(
        [*SPANE, "worker", "--concurrency", "2"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        with tempfile.TemporaryDirectory() as folder:
            fan_seconds = _seconds(env, fan_out(500), Path(folder))
            chain_seconds = _seconds(env, chain(50), Path(folder))
    finally:
        worker.terminate()
        worker.wait(timeout=60)
        connection.flushdb()
    fan_ratio = (501 / fan_seconds) / rq_fan.per_second
    chain_ratio = (chain_seconds * 1000 / 50) / rq_chain.ms_per_job
    print(f"fan-out: spane {fan_seconds:.3f} s, RQ {rq_fan.seconds:.3f} s; ratio {fan_ratio:.2f}")
    print(
        f"chain: spane {chain_seconds:.3f} s, RQ {rq_chain.seconds:.3f} s; ratio {chain_ratio:.2f}"
    )


if __name__ == "__main__":
    main()
