"""Whether a gated node (one with a rate limit or a circuit breaker) may start now: asked by
the worker that took its job, before the claim.

Rate limits keep a schedule of starts in Redis (engine/start_schedule.py), shared by every
worker. A start that may not run yet has its slot reserved and is handed back to the database
with that time (store/deferrals.py): it waits without a worker, is dispatched again then, and
runs in the slot it holds. Breakers live in the database (store/breakers.py).

Nodes without limits never come here: the model says so (`Node.gated`), and the fast paths
(instant batches, the child a completing worker takes at once) leave gated nodes out.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from redis import Redis

from spane_cli.engine.start_schedule import StartSchedule
from spane_cli.store.breakers import Admission
from spane_cli.store.store import Store
from spane_cli.timeutil import iso
from spane_cli.workflow.model import Node

# A start whose slot is this close waits here for it: handing it back would cost a wake cycle
# (a transaction, a job) longer than the wait itself.
LOCAL_WAIT_SECONDS = 0.05


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
        # Registering the script sends nothing: Redis sees it on the first limited start.
        self.schedule = StartSchedule(connection)

    def admit(
        self, node: Node, execution_id: str, node_id: str, attempt: int, item: int | None
    ) -> Verdict:
        if node.breaker is not None:
            admission = self.store.breaker_admit(node.breaker, execution_id, node_id, attempt, item)
            if admission is not None:
                return _breaker_verdict(node, admission)
        if node.rate_limits:
            run_key = f"{execution_id}:{node_id}:{attempt}:{'-' if item is None else item}"
            now = time.time()
            slot = self.schedule.take(node.rate_limits, run_key, now, LOCAL_WAIT_SECONDS)
            if slot.at > now + LOCAL_WAIT_SECONDS:
                limit = slot.binding or node.rate_limits[0]
                return Verdict(until=slot.at, reason=limit.describe())
            time.sleep(max(slot.at - time.time(), 0.0))
        return Verdict(admitted_at=time.time())


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
