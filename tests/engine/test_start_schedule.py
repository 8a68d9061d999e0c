"""The rate limits' schedule of starts, against a real Redis: racing workers never get more
starts into a window than the rate allows, a backlog is laid out without gaps, and a reserved
slot is kept for its run (asked again, a duplicate job takes no second one)."""

from __future__ import annotations

import bisect
import contextlib
import threading
from collections.abc import Iterator

import pytest
from redis import Redis

from spane_cli.engine.start_schedule import StartSchedule, margin
from spane_cli.workflow.limits import RateLimit, parse_rate

NOW = 1_800_000_000.0
SOON = 0.05


def near(expected: float) -> object:
    # Times are epoch seconds: a relative tolerance would pass anything within half an hour.
    return pytest.approx(expected, rel=0, abs=1e-4)


def limit(key: str, rate: str) -> RateLimit:
    return RateLimit(key=key, bucket=f"test:{key}", rate=parse_rate(rate))


@pytest.fixture
def connection(redis_url: str) -> Iterator[Redis]:
    with contextlib.closing(Redis.from_url(redis_url)) as client:
        yield client


def most_in_a_window(times: list[float], window: float) -> int:
    ordered = sorted(times)
    return max(bisect.bisect_left(ordered, t + window) - i for i, t in enumerate(ordered))


def test_racing_workers_lay_a_backlog_out_a_rate_at_a_time(redis_url: str) -> None:
    five = limit("workflow", "5/s")
    slots: list[float] = []
    lock = threading.Lock()

    def worker(number: int) -> None:
        with contextlib.closing(Redis.from_url(redis_url)) as client:
            schedule = StartSchedule(client)
            for run in range(10):
                slot = schedule.take([five], f"w{number}:{run}", NOW, SOON)
                with lock:
                    slots.append(slot.at)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(slots) == 40
    span = 1 + margin(five)
    # Never six in a window of the rate's length, and no window left unused.
    assert most_in_a_window(slots, 1.0) == 5
    assert sorted(slots) == [near(NOW + (k // 5) * span) for k in range(40)]


def test_a_reserved_slot_is_kept_for_its_run_and_given_up_when_it_comes(
    connection: Redis,
) -> None:
    schedule = StartSchedule(connection)
    one = limit("workflow", "1/s")
    assert schedule.take([one], "first", NOW, SOON).at == NOW
    reserved = schedule.take([one], "second", NOW, SOON)
    assert reserved.at == near(NOW + 1 + margin(one))
    assert reserved.binding == one
    # Its job delivered twice, or woken early: the same slot, not one more.
    for _ in range(3):
        assert schedule.take([one], "second", NOW + 0.5, SOON).at == reserved.at
    third = schedule.take([one], "third", NOW + 0.5, SOON)
    assert third.at == near(reserved.at + 1 + margin(one))
    # Due: the run takes its slot and the reservation is gone (a later retry is a new start).
    assert schedule.take([one], "second", reserved.at, SOON).at == reserved.at
    again = schedule.take([one], "second", reserved.at, SOON)
    assert again.at == near(third.at + 1 + margin(one))


def test_a_start_under_two_limits_keeps_both_and_the_order_of_each(connection: Redis) -> None:
    schedule = StartSchedule(connection)
    api = limit("host:api", "1/s")
    flow = limit("workflow", "3/s")
    assert schedule.take([api, flow], "a", NOW, SOON).at == NOW
    both = schedule.take([api, flow], "b", NOW, SOON)
    assert both.at == near(NOW + 1 + margin(api)) and both.binding == api
    # The workflow limit has starts left, but not before the one it has already promised.
    only_flow = schedule.take([flow], "c", NOW, SOON)
    assert only_flow.at == both.at and only_flow.binding == flow
    fourth = schedule.take([flow], "d", NOW, SOON)
    assert fourth.at == near(NOW + 1 + margin(flow))


def test_a_start_at_most_soon_ahead_is_not_reserved(connection: Redis) -> None:
    schedule = StartSchedule(connection)
    two = limit("workflow", "2/s")
    for run in ("a", "b"):
        schedule.take([two], run, NOW, SOON)
    near = NOW + 1 + margin(two) - SOON / 2
    slot = schedule.take([two], "c", near, SOON)
    assert 0 < slot.at - near <= SOON
    assert connection.keys("spane:limits:reserved:*") == []


def test_slots_missed_together_are_not_taken_together(connection: Redis) -> None:
    """Every worker was down while two reserved slots passed: woken at once, they would start
    at once. Missed by more than the margin, each takes a new slot instead."""
    schedule = StartSchedule(connection)
    one = limit("workflow", "1/s")
    schedule.take([one], "first", NOW, SOON)
    schedule.take([one], "second", NOW, SOON)
    third = schedule.take([one], "third", NOW, SOON)
    back = third.at + 5
    late = [schedule.take([one], run, back, SOON).at for run in ("second", "third")]
    assert late[0] == near(back)
    assert late[1] == near(back + 1 + margin(one))
    # A little late (within the margin) the slot is still its own.
    fourth = schedule.take([one], "fourth", back, SOON)
    assert schedule.take([one], "fourth", fourth.at + margin(one) / 2, SOON).at == fourth.at
