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
from collections.abc import Iterable, Mapping, Sequence
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

# Priority bands. A job of priority 0 waits on its queue's own RQ list (`rq:queue:default`),
# as it always did; a job of priority p waits on a band, another RQ queue named `default@p5`
# (queue names cannot hold `@`), registered in RQ's queue set so that `rq info` shows it, and
# in a sorted set per queue (BANDS_KEY) so that takers find it. A band leaves that set when a
# taker finds it empty; an enqueue pushes its ids before registering the band, so a band with
# jobs is never left out.
BAND_SEPARATOR = "@p"
BANDS_KEY = "spane:bands:{queue}"
# A token per job put on a band (at most BAND_WAKE_TOKENS kept): idle workers block on their
# queues' lists and this one, and a token sends one of them to look at the bands.
BAND_WAKE_KEY = "spane:bands:{queue}:wake"
BAND_WAKE_TOKENS = 256
# How much waiting one unit of priority is worth, in seconds (SPANE_PRIORITY_AGING).
PRIORITY_AGING_SECONDS = 60.0

# Pop up to ARGV[2] job ids from the queues of KEYS (pairs: a queue's list, its bands' set),
# first queue first, reading each payload and deleting its hash, in one round trip. The job
# hash key is derived from the id, as RQ does (Job.key_for). Within a queue that has bands,
# each take serves the head of the list whose head has the lowest `enqueued_at - priority *
# aging` (ARGV[3]): higher priority first, and a job that has waited `aging` seconds counts
# as one priority higher, so no band starves. Ties go to the higher priority. Returns the
# jobs (list, id, payload, enqueued_at) and the bands still holding jobs.
_TAKE_SCRIPT = """
local prefix = ARGV[1]
local wanted = tonumber(ARGV[2])
local aging = tonumber(ARGV[3])
local taken = {}
local busy_bands = {}

local function epoch(stamp)
  local y, m, d, hh, mi, ss = string.match(stamp or '', '^(%d+)-(%d+)-(%d+)T(%d+):(%d+):([%d.]+)')
  if not y then return -1e18 end
  y, m, d = tonumber(y), tonumber(m), tonumber(d)
  if m <= 2 then y = y - 1 end
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local doy = math.floor((153 * ((m + 9) % 12) + 2) / 5) + d - 1
  local doe = yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy
  local days = era * 146097 + doe - 719468
  return days * 86400 + tonumber(hh) * 3600 + tonumber(mi) * 60 + tonumber(ss)
end

-- Without bands the stamp is not read (nothing to weigh it against): '' instead.
local function pop(key, with_stamp)
  local id = redis.call('LPOP', key)
  if not id then return false end
  local job_key = prefix .. id
  local data, stamp
  if with_stamp then
    local fields = redis.call('HMGET', job_key, 'data', 'enqueued_at')
    data, stamp = fields[1], fields[2]
  else
    data = redis.call('HGET', job_key, 'data')
  end
  redis.call('DEL', job_key)
  table.insert(taken, key)
  table.insert(taken, id)
  table.insert(taken, data or '')
  table.insert(taken, stamp or '')
  return true
end

for i = 1, #KEYS, 2 do
  local key, registry = KEYS[i], KEYS[i + 1]
  local bands = redis.call('ZRANGE', registry, 0, -1)
  if #bands == 0 then
    while #taken < wanted * 4 and pop(key, false) do end
  else
    local lists = {{key, 0}}
    for _, band in ipairs(bands) do
      local band_key = key .. '@p' .. band
      if redis.call('EXISTS', band_key) == 1 then
        table.insert(lists, {band_key, tonumber(band)})
      else
        redis.call('ZREM', registry, band)
      end
    end
    while #taken < wanted * 4 do
      local best, best_rank, best_priority = nil, 0, 0
      for _, list in ipairs(lists) do
        local head = redis.call('LINDEX', list[1], 0)
        if head then
          local stamp = redis.call('HGET', prefix .. head, 'enqueued_at')
          local rank = epoch(stamp) - list[2] * aging
          if best == nil or rank < best_rank or (rank == best_rank and list[2] > best_priority) then
            best, best_rank, best_priority = list[1], rank, list[2]
          end
        end
      end
      if best == nil then break end
      pop(best, true)
    end
    for _, list in ipairs(lists) do
      if list[2] ~= 0 and redis.call('EXISTS', list[1]) == 1 then
        table.insert(busy_bands, list[1])
      end
    end
  end
end
return {taken, busy_bands}
"""


def band_queue(queue: str, priority: int) -> str:
    """The RQ queue a job of this priority waits on: the queue itself for priority 0."""
    return queue if priority == 0 else f"{queue}{BAND_SEPARATOR}{priority}"


def split_band(name: str) -> tuple[str, int]:
    """(queue, priority) of an RQ queue name that band_queue made."""
    queue, separator, priority = name.rpartition(BAND_SEPARATOR)
    if separator and queue:
        try:
            return queue, int(priority)
        except ValueError:
            pass
    return name, 0


@dataclass(frozen=True)
class TakenJob:
    job_id: str
    args: list[Any] | None  # None: the job's hash was gone (flushed); the outbox resends it
    queue: str = ""  # the RQ queue it came from: a band's name for a priority other than 0
    enqueued_at: str = ""  # as RQ wrote it; kept when the job is handed back

    @property
    def is_wake(self) -> bool:
        """A wake token, not a job: the caller looks at its queues again."""
        return not self.job_id

    def dispatch(self) -> Dispatch | None:
        """The job as a dispatch again, to put it back (see NodeWorker)."""
        if self.args is None:
            return None
        execution_id, node_id, attempt, *rest = self.args
        item = rest[0] if rest else None
        queue, priority = split_band(self.queue)
        return Dispatch(execution_id, node_id, int(attempt), queue, item, priority)


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
    def __init__(self, connection: Redis, priority_aging: float = PRIORITY_AGING_SECONDS) -> None:
        self.connection = connection
        self.priority_aging = priority_aging
        self._take_args: list[Any] = [Job.redis_job_namespace_prefix, 1, repr(priority_aging)]
        self._take_keys: dict[tuple[str, ...], list[str]] = {}
        # Whether the last take left jobs on a priority band of the queues it looked at.
        self.bands_waiting = False
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

    def enqueue(
        self,
        dispatches: Sequence[Dispatch],
        at_front: bool = False,
        stamps: Mapping[str, str] | None = None,
    ) -> None:
        """One pipeline per queue (band) and batch: each job is its hash plus its id on the
        queue (at its head with `at_front`: a job handed back goes first again). `stamps`:
        the `enqueued_at` a job id keeps (a job handed back keeps its place among the bands)."""
        by_queue: dict[tuple[str, int], list[Dispatch]] = defaultdict(list)
        for dispatch in dispatches:
            by_queue[dispatch.queue, dispatch.priority].append(dispatch)
        for (base, priority), group in by_queue.items():
            queue = self.queue(band_queue(base, priority))
            shared = self._job_fields(queue)
            for start in range(0, len(group), ENQUEUE_BATCH):
                stamp = utcformat(now())
                pipe = self.connection.pipeline(transaction=False)
                pipe.sadd(Queue.redis_queues_keys, queue.key)
                ids = []
                for dispatch in group[start : start + ENQUEUE_BATCH]:
                    identifier = job_id(dispatch)
                    enqueued = stamp if stamps is None else stamps.get(identifier) or stamp
                    args = list(job_args(dispatch))
                    payload = JSONSerializer.dumps((JOB_FUNCTION, None, args, {}))
                    fields: dict[Any, Any] = {
                        **shared,
                        "data": zlib.compress(payload),
                        "description": f"{JOB_FUNCTION}{tuple(args)!r}",
                        "created_at": stamp,
                        "enqueued_at": enqueued,
                    }
                    pipe.hset(self._job_key_prefix + identifier, mapping=fields)
                    ids.append(identifier)
                if at_front:
                    pipe.lpush(queue.key, *reversed(ids))
                else:
                    pipe.rpush(queue.key, *ids)
                if priority != 0:
                    # After the ids: a taker that finds the band empty may drop it from the set.
                    pipe.zadd(BANDS_KEY.format(queue=base), {str(priority): priority})
                    wake = BAND_WAKE_KEY.format(queue=base)
                    pipe.lpush(wake, *["1"] * min(len(ids), BAND_WAKE_TOKENS))
                    pipe.ltrim(wake, 0, BAND_WAKE_TOKENS - 1)
                pipe.execute()

    def hand_back(self, jobs: Sequence[TakenJob]) -> None:
        """Jobs taken but not run, back at the head of their queue with their first
        `enqueued_at`, so that the priority rule sees them as old as they are."""
        dispatches = [d for d in (job.dispatch() for job in jobs) if d is not None]
        stamps = {job.job_id: job.enqueued_at for job in jobs if job.enqueued_at}
        self.enqueue(dispatches, at_front=True, stamps=stamps)

    def take(self, queue_keys: Sequence[str], count: int = 1) -> list[TakenJob]:
        """Up to `count` jobs, first queue first (within a queue, by the priority rule of
        _TAKE_SCRIPT), removed from Redis; empty when all queues are. A job leaves Redis
        before it is claimed: if this worker dies now, the reconciler re-sends it from the
        outbox."""
        wanted = tuple(queue_keys)
        keys = self._take_keys.get(wanted)
        if keys is None:
            keys = self._take_keys[wanted] = [
                key for queue_key in wanted for key in (queue_key, self._bands_key(queue_key))
            ]
        args = self._take_args
        if count != 1:
            args = [args[0], count, args[2]]
        flat, busy = self._take(keys=keys, args=args)
        self.bands_waiting = bool(busy)
        prefix = Queue.redis_queue_namespace_prefix
        return [
            TakenJob(
                _text(flat[i + 1]),
                _decode_args(flat[i + 2] or None),
                _text(flat[i]).removeprefix(prefix),
                _text(flat[i + 3]),
            )
            for i in range(0, len(flat), 4)
        ]

    @staticmethod
    def _bands_key(queue_key: str) -> str:
        return BANDS_KEY.format(queue=queue_key.removeprefix(Queue.redis_queue_namespace_prefix))

    @staticmethod
    def _wake_key(queue_key: str) -> str:
        return BAND_WAKE_KEY.format(
            queue=queue_key.removeprefix(Queue.redis_queue_namespace_prefix)
        )

    def depth(self, queue: str) -> int:
        """Jobs waiting on a queue, its priority bands included."""
        bands = self.connection.zrange(BANDS_KEY.format(queue=queue), 0, -1)
        pipe = self.connection.pipeline(transaction=False)
        for name in [queue, *(band_queue(queue, int(_text(b))) for b in bands)]:  # type: ignore[arg-type]
            pipe.llen(Queue.redis_queue_namespace_prefix + name)
        return sum(int(n) for n in pipe.execute())

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
        """A job, waiting up to `timeout` seconds for one; None when none came. When a token
        comes first (at `wake_key`, or one saying a priority band of these queues got a job),
        a TakenJob for which `is_wake` holds, whose queue is the token's key."""
        wake_keys = [self._wake_key(k) for k in queue_keys]
        keys = [*queue_keys, *wake_keys]
        if wake_key:
            keys.append(wake_key)
        try:
            popped = self.connection.blpop(keys, self._timeout(timeout))
        except ResponseError as exc:
            if self._whole_second_timeouts or "timeout" not in str(exc):
                raise
            self._whole_second_timeouts = True
            popped = self.connection.blpop(keys, self._timeout(timeout))
        if not popped:
            return None
        popped_key = _text(popped[0])
        if popped_key == wake_key or popped_key in wake_keys:
            return TakenJob("", None, popped_key)
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
