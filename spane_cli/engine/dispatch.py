"""Putting node jobs on RQ queues. A job is JSON naming an execution, a node and an attempt."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence

from redis import Redis
from rq import Queue
from rq.job import Job
from rq.serializers import JSONSerializer

from spane_cli.store.store import Dispatch

JOB_FUNCTION = "spane_cli.engine.jobs.run_node"


def job_id(dispatch: Dispatch) -> str:
    # RQ job ids allow letters, digits, _ and -; node ids are a subset of that.
    item = "" if dispatch.item is None else f"-i{dispatch.item}"
    return f"spane-{dispatch.execution_id}-{dispatch.attempt}{item}-{dispatch.node_id}"


class Dispatcher:
    def __init__(self, connection: Redis) -> None:
        self.connection = connection
        self._queues: dict[str, Queue] = {}

    def queue(self, name: str) -> Queue:
        if name not in self._queues:
            self._queues[name] = Queue(name, connection=self.connection, serializer=JSONSerializer)
        return self._queues[name]

    def enqueue(self, dispatches: Sequence[Dispatch]) -> None:
        """Enqueue in one pipeline per queue and batch."""
        by_queue: dict[str, list[Dispatch]] = defaultdict(list)
        for dispatch in dispatches:
            by_queue[dispatch.queue].append(dispatch)
        for name, group in by_queue.items():
            queue = self.queue(name)
            for start in range(0, len(group), 500):
                jobs = [
                    Queue.prepare_data(
                        JOB_FUNCTION,
                        args=(d.execution_id, d.node_id, d.attempt, d.item),
                        job_id=job_id(d),
                        result_ttl=0,
                        failure_ttl=0,
                        timeout=-1,  # node timeouts are enforced by spane, not by RQ
                    )
                    for d in group[start : start + 500]
                ]
                queue.enqueue_many(jobs)

    def missing(self, dispatches: Iterable[Dispatch]) -> list[Dispatch]:
        """The dispatches whose job is no longer in Redis (flushed, or Redis restarted)."""
        wanted = list(dispatches)
        if not wanted:
            return []
        pipe = self.connection.pipeline(transaction=False)
        for dispatch in wanted:
            pipe.exists(Job.key_for(job_id(dispatch)))
        present = pipe.execute()
        return [d for d, exists in zip(wanted, present, strict=True) if not exists]
