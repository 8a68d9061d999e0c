"""Node jobs on RQ queues. A job is JSON naming an execution, a node and an attempt.

Jobs are RQ jobs in RQ's own hash format (the fields come from RQ's `Job.to_dict`), so `rq
info` and RQ's tools see them. Writing and taking them is done here with one pipeline per
batch and one round trip per job taken: RQ's general enqueue path does per-job work (status
bookkeeping, dependency checks, a MULTI per batch) that a fan-out of 10,000 nodes pays for
in seconds, and none of it is needed when the database decides what runs.
"""

from __future__ import annotations

import math
import zlib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from redis import Redis
from redis.exceptions import ResponseError
from rq import Queue
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer
from rq.utils import now, utcformat

from spane_cli.store.records import Dispatch

JOB_FUNCTION = "spane_cli.engine.jobs.run_node"
ENQUEUE_BATCH = 500
# A list idle workers block on beside their queues: a token there means "a retry or a delay
# may be due soon, look at the database's next due time". One token is enough (any one idle
# worker keeps the time), so the list never holds more.
TIMER_WAKE_KEY = "spane:timers:wake"

# Pop up to ARGV[2] job ids, first queue first, reading each payload and deleting its hash, in
# one round trip. The job hash key is derived from the id, as RQ does (Job.key_for).
_TAKE_SCRIPT = """
local wanted = tonumber(ARGV[2])
local taken = {}
for _, key in ipairs(KEYS) do
  while #taken < wanted * 3 do
    local id = redis.call('LPOP', key)
    if not id then break end
    local job_key = ARGV[1] .. id
    local data = redis.call('HGET', job_key, 'data')
    redis.call('DEL', job_key)
    table.insert(taken, key)
    table.insert(taken, id)
    table.insert(taken, data or '')
  end
end
return taken
"""


@dataclass(frozen=True)
class TakenJob:
    job_id: str
    args: list[Any] | None  # None: the job's hash was gone (flushed); the outbox resends it
    queue: str = ""

    def dispatch(self) -> Dispatch | None:
        """The job as a dispatch again, to put it back (see NodeWorker)."""
        if self.args is None:
            return None
        execution_id, node_id, attempt, *rest = self.args
        item = rest[0] if rest else None
        return Dispatch(execution_id, node_id, int(attempt), self.queue, item)


def job_id(dispatch: Dispatch) -> str:
    # RQ job ids allow letters, digits, _ and -; node ids are a subset of that.
    item = "" if dispatch.item is None else f"-i{dispatch.item}"
    return f"spane-{dispatch.execution_id}-{dispatch.attempt}{item}-{dispatch.node_id}"


def job_args(dispatch: Dispatch) -> tuple[str, str, int, int | None]:
    return (dispatch.execution_id, dispatch.node_id, dispatch.attempt, dispatch.item)


def _decode_args(data: bytes | None) -> list[Any] | None:
    if data is None:
        return None
    try:
        raw = zlib.decompress(data)
    except zlib.error:
        raw = data  # RQ also accepts an uncompressed payload
    try:
        _function, _instance, args, _kwargs = JSONSerializer.loads(raw)
    except (ValueError, TypeError):
        return None
    return list(args) if isinstance(args, list) and len(args) >= 3 else None


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class Dispatcher:
    def __init__(self, connection: Redis) -> None:
        self.connection = connection
        self._queues: dict[str, Queue] = {}
        self._fields: dict[str, dict[Any, Any]] = {}
        self._take = connection.register_script(_TAKE_SCRIPT)
        self._job_key_prefix = Job.redis_job_namespace_prefix
        # Redis before 6.0 takes whole seconds only for a blocking pop's timeout.
        self._whole_second_timeouts = False

    def queue(self, name: str) -> Queue:
        if name not in self._queues:
            self._queues[name] = Queue(name, connection=self.connection, serializer=JSONSerializer)
        return self._queues[name]

    def _job_fields(self, queue: Queue) -> dict[Any, Any]:
        """The fields every job on this queue shares, as RQ itself writes them."""
        if queue.name not in self._fields:
            template = Job.create(
                JOB_FUNCTION,
                args=(),
                connection=self.connection,
                serializer=JSONSerializer,
                result_ttl=0,
                failure_ttl=0,
                timeout=-1,  # node timeouts are enforced by spane, not by RQ
                origin=queue.name,
            )
            fields = {k: v for k, v in template.to_dict().items() if v != ""}
            fields["status"] = JobStatus.QUEUED.value
            self._fields[queue.name] = fields
        return self._fields[queue.name]

    def enqueue(self, dispatches: Sequence[Dispatch], at_front: bool = False) -> None:
        """One pipeline per queue and batch: each job is its hash plus its id on the queue
        (at its head with `at_front`: a job handed back goes first again)."""
        by_queue: dict[str, list[Dispatch]] = defaultdict(list)
        for dispatch in dispatches:
            by_queue[dispatch.queue].append(dispatch)
        for name, group in by_queue.items():
            queue = self.queue(name)
            shared = self._job_fields(queue)
            for start in range(0, len(group), ENQUEUE_BATCH):
                stamp = utcformat(now())
                pipe = self.connection.pipeline(transaction=False)
                pipe.sadd(Queue.redis_queues_keys, queue.key)
                ids = []
                for dispatch in group[start : start + ENQUEUE_BATCH]:
                    identifier = job_id(dispatch)
                    args = list(job_args(dispatch))
                    payload = JSONSerializer.dumps((JOB_FUNCTION, None, args, {}))
                    fields: dict[Any, Any] = {
                        **shared,
                        "data": zlib.compress(payload),
                        "description": f"{JOB_FUNCTION}{tuple(args)!r}",
                        "created_at": stamp,
                        "enqueued_at": stamp,
                    }
                    pipe.hset(self._job_key_prefix + identifier, mapping=fields)
                    ids.append(identifier)
                if at_front:
                    pipe.lpush(queue.key, *reversed(ids))
                else:
                    pipe.rpush(queue.key, *ids)
                pipe.execute()

    def take(self, queue_keys: Sequence[str], count: int = 1) -> list[TakenJob]:
        """Up to `count` jobs, first queue first, removed from Redis; empty when all queues are.
        A job leaves Redis before it is claimed: if this worker dies now, the reconciler
        re-sends it from the outbox."""
        flat = self._take(keys=list(queue_keys), args=[self._job_key_prefix, count])
        return [
            TakenJob(
                _text(flat[i + 1]),
                _decode_args(flat[i + 2] or None),
                _text(flat[i]).removeprefix(Queue.redis_queue_namespace_prefix),
            )
            for i in range(0, len(flat), 3)
        ]

    def wake_timers(self) -> None:
        """Tell one idle worker that a due time may have changed."""
        pipe = self.connection.pipeline(transaction=False)
        pipe.lpush(TIMER_WAKE_KEY, "1")
        pipe.ltrim(TIMER_WAKE_KEY, 0, 0)
        pipe.execute()

    def _timeout(self, seconds: float) -> int | float:
        return max(1, math.ceil(seconds)) if self._whole_second_timeouts else seconds

    def take_blocking(
        self, queue_keys: Sequence[str], timeout: float, wake_key: str | None = None
    ) -> TakenJob | None:
        """A job, waiting up to `timeout` seconds for one; None when none came. When the token
        at `wake_key` comes first, a TakenJob without args whose queue is `wake_key`."""
        keys = [*queue_keys, wake_key] if wake_key else list(queue_keys)
        try:
            popped = self.connection.blpop(keys, self._timeout(timeout))
        except ResponseError as exc:
            if self._whole_second_timeouts or "timeout" not in str(exc):
                raise
            self._whole_second_timeouts = True
            popped = self.connection.blpop(keys, self._timeout(timeout))
        if not popped:
            return None
        if wake_key and _text(popped[0]) == wake_key:
            return TakenJob("", None, wake_key)
        identifier = _text(popped[1])
        pipe = self.connection.pipeline(transaction=False)
        pipe.hget(self._job_key_prefix + identifier, "data")
        pipe.delete(self._job_key_prefix + identifier)
        data, _deleted = pipe.execute()
        queue = _text(popped[0]).removeprefix(Queue.redis_queue_namespace_prefix)
        return TakenJob(identifier, _decode_args(data), queue)

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
