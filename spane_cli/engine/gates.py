"""Whether a gated node (one with a rate limit or a circuit breaker) may start now: asked by
the worker that took its job, before the claim.

Rate limits are counted in Redis by the `limits` library's moving window, so every worker
counts against the same starts. A refused start is handed back to the database with the time
the limiter says a start will be allowed (store/deferrals.py): it waits without a worker and
is dispatched again then. Breakers live in the database (store/breakers.py).

Nodes without limits never come here: the model says so (`Node.gated`), and the fast paths
(instant batches, the child a completing worker takes at once) leave gated nodes out.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import cast

from limits import RateLimitItemPerSecond
from limits.storage import RedisStorage
from limits.strategies import MovingWindowRateLimiter
from redis import Redis

from spane_cli.store.breakers import Admission
from spane_cli.store.store import Store
from spane_cli.timeutil import iso
from spane_cli.workflow.limits import RateLimit
from spane_cli.workflow.model import Node

KEY_PREFIX = "spane:limits"
# The starts a rate allows are spaced by its window plus this share of it (at most
# MARGIN_SECONDS): a node's own record of its start comes a little after its admission (the
# claim, a process started), and admitted right at the end of a window, the recorded starts of
# two windows could crowd into one.
MARGIN_SHARE = 0.1
MARGIN_SECONDS = 0.1
# A start refused this close to its time waits here and asks again: handing it back would
# cost a wake cycle (a transaction, a job) longer than the wait itself.
LOCAL_WAIT_SECONDS = 0.05


# A put-off start is dispatched this long after its time: a wake a hair early is refused again.
WAKE_SECONDS = 0.01


def margin(limit: RateLimit) -> float:
    return min(limit.rate.per * MARGIN_SHARE, MARGIN_SECONDS)


def gated_run(node: Node, item: int | None) -> bool:
    """Whether this run asks a gate: a foreach node's items do, not the node itself."""
    return node.gated and (item is None) == (node.foreach is None)


@dataclass(frozen=True)
class Verdict:
    """What the gates say of one start."""

    admitted_at: float | None = None  # allowed: the time it was (its recorded start)
    until: float | None = None  # put off until then
    reason: str = ""  # what it waits for, in words (`get`, `watch`, the event)
    failure: str | None = None  # a breaker with on_open: fail refused it: fail with this


class Gates:
    def __init__(self, store: Store, connection: Redis) -> None:
        self.store = store
        self.connection = connection
        self._limiter: MovingWindowRateLimiter | None = None

    @property
    def limiter(self) -> MovingWindowRateLimiter:
        if self._limiter is None:
            storage = RedisStorage(
                "redis://", connection_pool=self.connection.connection_pool, key_prefix=KEY_PREFIX
            )
            self._limiter = MovingWindowRateLimiter(storage)
        return self._limiter

    def admit(
        self, node: Node, execution_id: str, node_id: str, attempt: int, item: int | None
    ) -> Verdict:
        if node.breaker is not None:
            admission = self.store.breaker_admit(node.breaker, execution_id, node_id, attempt, item)
            if admission is not None:
                return _breaker_verdict(node, admission)
        if node.rate_limits:
            taken = self._take(node.rate_limits)
            if isinstance(taken, tuple) and taken[1] - time.time() <= LOCAL_WAIT_SECONDS:
                time.sleep(max(taken[1] - time.time(), 0.0))
                taken = self._take(node.rate_limits)
            if isinstance(taken, tuple):
                limit, reset = taken
                return Verdict(until=self._retry_at(limit, reset), reason=limit.describe())
            return Verdict(admitted_at=taken)
        return Verdict(admitted_at=time.time())

    def _take(self, rate_limits: tuple[RateLimit, ...]) -> tuple[RateLimit, float] | float:
        """One start taken from every limit, and the time it was (taken just before the hit:
        never later than the limiter's own); or the first limit that has none left, with the
        time it will have one. Each is first read over its window widened by its margin
        (so that a refusal by one uses up none of the others); the library's hit then counts
        the start atomically, over the exact window, so that no race between workers lets
        more through than the rate."""
        limiter = self.limiter
        storage = cast(RedisStorage, limiter.storage)
        for limit in rate_limits:
            item = _item(limit)
            widened = limit.rate.per + margin(limit)
            # The library only subtracts the expiry from the current time: a float serves.
            oldest, count = storage.get_moving_window(
                item.key_for(limit.bucket), item.amount, cast(int, widened)
            )
            if count >= item.amount:
                return limit, oldest + widened
        admitted_at = time.time()
        for limit in rate_limits:
            item = _item(limit)
            if not limiter.hit(item, limit.bucket):
                reset = limiter.get_window_stats(item, limit.bucket).reset_time
                return limit, reset + margin(limit)
        return admitted_at

    def _retry_at(self, limit: RateLimit, reset: float) -> float:
        """When the put-off start should look again: when the limit will have a start
        left, spread over the windows after it by how many were put off for the same time
        before it, so that a backlog wakes `amount` at a time rather than all at every reset."""
        item = _item(limit)
        ticket = f"{KEY_PREFIX}:waiting:{item.key_for(limit.bucket)}:{int(reset * 1000)}"
        pipe = self.connection.pipeline(transaction=False)
        pipe.incr(ticket)
        pipe.expire(ticket, max(int(limit.rate.per * 2), 2))
        place = int(pipe.execute()[0]) - 1
        # Each later round starts once the one before it has been admitted, a little late.
        rounds = place // limit.rate.amount
        later = rounds * (limit.rate.per + margin(limit) + WAKE_SECONDS)
        return max(reset, time.time()) + WAKE_SECONDS + later


def _item(limit: RateLimit) -> RateLimitItemPerSecond:
    return RateLimitItemPerSecond(limit.rate.amount, limit.rate.per, namespace="spane")


def _breaker_verdict(node: Node, admission: Admission) -> Verdict:
    assert node.breaker is not None
    host = node.breaker.host
    if admission.until is not None:
        when = f"until {iso(admission.until)}"
        retry_at = admission.until
    else:  # half open: a probe runs somewhere; it decides
        when = "until its probe ends"
        retry_at = time.time() + min(node.breaker.open_for, 1.0)
    if node.breaker.on_open == "fail":
        return Verdict(failure=f"circuit open for host {host} {when}")
    return Verdict(until=retry_at, reason=f"circuit breaker open for host {host}")
