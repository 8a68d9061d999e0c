"""The baseline: raw RQ SimpleWorkers draining no-op jobs, and an RQ `depends_on` chain."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass

from redis import Redis
from rq import Queue
from rq.job import Job
from rq.serializers import JSONSerializer

BASELINE_QUEUE = "spane-bench-rq"


def noop() -> None:
    """The job every baseline runs."""


@dataclass(frozen=True)
class BaselineResult:
    jobs: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.jobs / self.seconds if self.seconds > 0 else 0.0

    @property
    def ms_per_job(self) -> float:
        return self.seconds * 1000 / self.jobs if self.jobs else 0.0


def _drain(redis_url: str, workers: int) -> None:
    command = [
        sys.executable, "-m", "rq.cli", "worker", "--burst", "--quiet",
        "--worker-class", "rq.worker.SimpleWorker",
        "--serializer", "rq.serializers.JSONSerializer",
        "--url", redis_url, BASELINE_QUEUE,
    ]  # fmt: skip
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    processes = [
        subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for _ in range(workers)
    ]
    for process in processes:
        _, err = process.communicate(timeout=600)
        if process.returncode not in (0, None):
            raise RuntimeError(f"rq worker failed: {err.decode(errors='replace')[-500:]}")


def _span(connection: Redis, job_ids: list[str]) -> float:
    jobs = Job.fetch_many(job_ids, connection=connection, serializer=JSONSerializer)
    started = [j.started_at for j in jobs if j is not None and j.started_at]
    ended = [j.ended_at for j in jobs if j is not None and j.ended_at]
    if len(ended) != len(job_ids):
        raise RuntimeError(f"only {len(ended)} of {len(job_ids)} RQ jobs finished")
    return (max(ended) - min(started)).total_seconds()


def _cleanup(connection: Redis, job_ids: list[str]) -> None:
    queue = Queue(BASELINE_QUEUE, connection=connection, serializer=JSONSerializer)
    pipe = connection.pipeline(transaction=False)
    for job_id in job_ids:
        pipe.delete(Job.key_for(job_id))
    pipe.execute()
    queue.empty()
    for registry in (queue.finished_job_registry, queue.failed_job_registry):
        for job_id in registry.get_job_ids():
            registry.remove(job_id)


def drain_jobs(connection: Redis, redis_url: str, count: int, workers: int) -> BaselineResult:
    """Enqueue `count` no-op jobs, then let `workers` SimpleWorkers drain them."""
    queue = Queue(BASELINE_QUEUE, connection=connection, serializer=JSONSerializer)
    job_ids: list[str] = []
    for start in range(0, count, 500):
        batch = [
            Queue.prepare_data("spane_cli.bench.baseline.noop", result_ttl=3600)
            for _ in range(min(500, count - start))
        ]
        job_ids += [job.id for job in queue.enqueue_many(batch)]
    _drain(redis_url, workers)
    seconds = _span(connection, job_ids)
    _cleanup(connection, job_ids)
    return BaselineResult(count, seconds)


def depends_on_chain(
    connection: Redis, redis_url: str, length: int, workers: int
) -> BaselineResult:
    """A chain of `length` jobs, each `depends_on` the one before."""
    queue = Queue(BASELINE_QUEUE, connection=connection, serializer=JSONSerializer)
    job_ids: list[str] = []
    previous: Job | None = None
    for _ in range(length):
        previous = queue.enqueue(
            "spane_cli.bench.baseline.noop", depends_on=previous, result_ttl=3600
        )
        job_ids.append(previous.id)
    _drain(redis_url, workers)
    seconds = _span(connection, job_ids)
    _cleanup(connection, job_ids)
    time.sleep(0)
    return BaselineResult(length, seconds)
