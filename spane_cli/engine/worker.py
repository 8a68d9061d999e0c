"""The node worker loop: take a job from RQ, claim, run, complete, dispatch the children.

Composes RQ's queue primitives (no fork per job, no subclassing of RQ's Worker): the database
decides what runs, so a job is only a hint to look at one node attempt.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from redis import Redis
from rq import Queue
from rq.job import Job
from rq.serializers import JSONSerializer

from spane_cli.engine import reconcile
from spane_cli.engine.dispatch import Dispatcher
from spane_cli.engine.runner import run_claimed, secrets_from_environment
from spane_cli.engine.states import ExecutionStatus
from spane_cli.store.models import Execution
from spane_cli.store.store import Store

log = logging.getLogger("spane.worker")

RECONCILE_EVERY_SECONDS = 1.0


@dataclass
class WorkerOptions:
    queues: Sequence[str] = ("default",)
    name: str = field(default_factory=lambda: f"{socket.gethostname()}.{os.getpid()}")
    burst: bool = False
    max_jobs: int | None = None
    poll_seconds: int = 1


class NodeWorker:
    def __init__(
        self,
        store: Store,
        connection: Redis,
        options: WorkerOptions,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> None:
        self.store = store
        self.connection = connection
        self.options = options
        self.dispatcher = Dispatcher(connection)
        self.should_stop = should_stop
        self.queue_keys = [Queue(q, connection=connection).key for q in options.queues]
        self.secrets = secrets_from_environment()
        self.jobs_done = 0
        self._next_reconcile = 0.0

    def run(self) -> None:
        while not self.should_stop():
            now = time.time()
            if now >= self._next_reconcile:
                self._next_reconcile = now + RECONCILE_EVERY_SECONDS
                reconcile.tick(self.store, self.dispatcher, now)
            popped = Queue.lpop(self.queue_keys, timeout=None, connection=self.connection)
            if popped is None:
                if self.options.burst and not self._work_due_soon():
                    return
                popped = self._wait_for_job()
                if popped is None:
                    continue
            self._process(popped[1])
            self.jobs_done += 1
            if self.options.max_jobs is not None and self.jobs_done >= self.options.max_jobs:
                return

    def _wait_for_job(self) -> tuple[bytes | str, bytes | str] | None:
        # BLPOP for at most the time left before the next reconcile tick.
        wait = max(1, int(self._next_reconcile - time.time() + 0.999))
        result = self.connection.blpop(self.queue_keys, min(wait, self.options.poll_seconds))
        return (result[0], result[1]) if result else None

    def _work_due_soon(self) -> bool:
        """Burst mode keeps going while any execution could still give us work."""
        return (
            Execution.select()
            .where(Execution.status.in_([ExecutionStatus.PENDING, ExecutionStatus.RUNNING]))
            .exists()
        )

    def _process(self, raw_job_id: bytes | str) -> None:
        job_id = raw_job_id.decode() if isinstance(raw_job_id, bytes) else raw_job_id
        try:
            job = Job.fetch(job_id, connection=self.connection, serializer=JSONSerializer)
        except Exception:
            return  # the hash is gone (flushed); the reconciler re-sends from the outbox
        execution_id, node_id, attempt = job.args
        self.connection.delete(job.key)
        claim = self.store.claim_node(execution_id, node_id, int(attempt), self.options.name)
        if claim is None:
            return  # duplicate, late or stale: somebody else has it, or it is over
        outcome = run_claimed(claim, self.secrets, self._cancel_check(execution_id))
        if outcome.status == "failed":
            first = (outcome.error or "failed").splitlines()[0]
            log.warning(
                "node %s of %s failed (attempt %s): %s", node_id, execution_id, attempt, first
            )
        dispatches = self.store.complete_node(claim, outcome)
        self.dispatcher.enqueue(dispatches)

    @staticmethod
    def _cancel_check(execution_id: str) -> Callable[[], bool]:
        last = [0.0, False]

        def cancelled() -> bool:
            now = time.time()
            if now - last[0] >= 1.0:
                last[0] = now
                row = Execution.select(Execution.status).where(Execution.id == execution_id).first()
                last[1] = row is None or row.status in (
                    ExecutionStatus.CANCELLED,
                    ExecutionStatus.FAILED,
                )
            return bool(last[1])

        return cancelled
