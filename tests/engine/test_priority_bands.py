"""Priority bands on Redis, driven through the Dispatcher alone: where a job waits, which job
a take serves, and how aging lets an old low-priority job past younger high-priority ones."""

from __future__ import annotations

import datetime
import uuid

import pytest
from redis import Redis
from rq import Queue
from rq.utils import utcformat

from spane_cli.engine import reconcile
from spane_cli.engine.dispatch import Dispatcher, band_queue, job_id, split_band
from spane_cli.store.db import open_database
from spane_cli.store.migrations import migrate
from spane_cli.store.records import Dispatch
from spane_cli.store.store import Store
from spane_cli.store.versions import register_version


@pytest.fixture
def dispatcher(redis_url: str) -> Dispatcher:
    return Dispatcher(Redis.from_url(redis_url), priority_aging=60.0)


def job(name: str, priority: int = 0, queue: str = "default") -> Dispatch:
    return Dispatch(f"exec-{name}", "a", 1, queue, None, priority)


def taken_names(dispatcher: Dispatcher, count: int = 100) -> list[str]:
    keys = [Queue("default", connection=dispatcher.connection).key]
    names = []
    while len(names) < count:
        batch = dispatcher.take(keys, count=1)
        if not batch:
            break
        assert batch[0].args is not None
        names.append(str(batch[0].args[0]).removeprefix("exec-"))
    return names


def ago(seconds: float) -> str:
    moment = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=seconds)
    return utcformat(moment.replace(tzinfo=None))


def test_band_names_round_trip_and_priority_zero_is_the_queue_itself() -> None:
    assert band_queue("default", 0) == "default"
    assert band_queue("gpu.big", 5) == "gpu.big@p5"
    assert band_queue("q", -3) == "q@p-3"
    for name, priority in [("default", 0), ("gpu.big", 5), ("q", -3)]:
        assert split_band(band_queue(name, priority)) == (name, priority)
    assert split_band("odd@pnot") == ("odd@pnot", 0)


def test_a_priority_zero_job_goes_where_it_always_went(dispatcher: Dispatcher) -> None:
    dispatcher.enqueue([job("plain")])
    redis = dispatcher.connection
    assert [raw.decode() for raw in redis.lrange("rq:queue:default", 0, -1)] == [
        job_id(job("plain"))
    ]
    assert not redis.exists("spane:bands:default", "spane:bands:default:wake")
    assert {k.decode() for k in redis.smembers("rq:queues")} == {"rq:queue:default"}


def test_a_band_is_an_rq_queue_that_rq_sees(dispatcher: Dispatcher) -> None:
    dispatcher.enqueue([job("high", 5), job("higher", 5)])
    redis = dispatcher.connection
    assert "rq:queue:default@p5" in {k.decode() for k in redis.smembers("rq:queues")}
    band = Queue("default@p5", connection=redis)
    assert band.count == 2
    assert band.fetch_job(job_id(job("high", 5))) is not None  # RQ reads the job hash
    assert dispatcher.depth("default") == 2


def test_higher_priority_is_taken_first_then_arrival_order(dispatcher: Dispatcher) -> None:
    dispatcher.enqueue([job(f"low{i}") for i in range(3)])
    dispatcher.enqueue([job("neg", -1)])
    dispatcher.enqueue([job("mid", 2), job("high", 9), job("mid2", 2)])
    assert taken_names(dispatcher) == ["high", "mid", "mid2", "low0", "low1", "low2", "neg"]
    # Emptied bands leave the set the takers read.
    assert dispatcher.connection.zcard("spane:bands:default") == 0


def test_a_job_that_waited_long_enough_goes_before_younger_higher_work(
    dispatcher: Dispatcher,
) -> None:
    # Priority 3 is worth 3 minutes of waiting: a job of priority 0 that has waited 4
    # minutes goes before one of priority 3 that came now, not before one that came 2
    # minutes after it.
    old = job("old")
    dispatcher.enqueue([old], stamps={job_id(old): ago(240)})
    before = job("before", 3)
    dispatcher.enqueue([before], stamps={job_id(before): ago(200)})
    dispatcher.enqueue([job("now", 3)])
    assert taken_names(dispatcher) == ["before", "old", "now"]


def test_a_job_handed_back_keeps_its_place(dispatcher: Dispatcher) -> None:
    old = job("old")
    dispatcher.enqueue([old], stamps={job_id(old): ago(600)})
    dispatcher.enqueue([job("high", 5)])
    keys = [Queue("default", connection=dispatcher.connection).key]
    first = dispatcher.take(keys, count=1)
    assert first[0].args is not None and first[0].args[0] == "exec-old"
    dispatcher.hand_back(first)
    assert taken_names(dispatcher) == ["old", "high"]


def test_a_batch_take_follows_the_rule_across_bands(dispatcher: Dispatcher) -> None:
    dispatcher.enqueue([job("low")])
    dispatcher.enqueue([job("high", 1)])
    keys = [Queue("default", connection=dispatcher.connection).key]
    taken = dispatcher.take(keys, count=5)
    assert [t.queue for t in taken] == ["default@p1", "default"]
    assert [t.dispatch() for t in taken] == [job("high", 1), job("low")]


def test_an_idle_taker_wakes_for_a_new_band(dispatcher: Dispatcher) -> None:
    keys = [Queue("default", connection=dispatcher.connection).key]
    assert dispatcher.take(keys) == []
    dispatcher.enqueue([job("high", 4)])
    woken = dispatcher.take_blocking(keys, timeout=5)
    assert woken is not None and woken.is_wake
    assert taken_names(dispatcher) == ["high"]
    assert dispatcher.bands_waiting is False


def test_bands_of_one_queue_do_not_pass_a_queue_served_before_it(
    dispatcher: Dispatcher,
) -> None:
    dispatcher.enqueue([job("urgent-elsewhere", 50, queue="other")])
    dispatcher.enqueue([job("first-queue")])
    keys = [Queue(q, connection=dispatcher.connection).key for q in ("default", "other")]
    taken = dispatcher.take(keys, count=2)
    assert [t.queue for t in taken] == ["default", "other@p50"]


def test_a_band_job_lost_with_redis_is_sent_again_to_its_band(
    postgres_url: str, dispatcher: Dispatcher
) -> None:
    database = open_database(postgres_url)
    migrate(database)
    store = Store(database)
    name = f"lost-band-{uuid.uuid4().hex[:8]}"
    data = {"version": 1, "name": name, "nodes": {"a": {"type": "noop", "priority": 7}}}
    version_id = int(register_version(database, name, data, {}).id)
    execution_id, _, dispatches = store.create_execution(version_id, None, now=1000.0)
    dispatcher.enqueue(dispatches)
    dispatcher.connection.flushdb()  # Redis restarted empty
    reconcile.tick(store, dispatcher, now=1000.0 + reconcile.DISPATCH_GRACE_SECONDS + 0.1)
    band = dispatcher.connection.lrange("rq:queue:default@p7", 0, -1)
    assert job_id(Dispatch(execution_id, "a", 1, "default", None, 7)).encode() in band
    database.close()
