"""The reconciler: re-dispatch what the database says is due. Runs on a tick in every worker.

`tick(now)` takes the time as an argument so it is tested without sleeping.
"""

from __future__ import annotations

import time

from spane_cli.engine.dispatch import Dispatcher
from spane_cli.store.models import Outbox
from spane_cli.store.store import Dispatch, Store
from spane_cli.store.workers import recover_lost_nodes

# An outbox row younger than this is left alone: its job is probably on its way.
DISPATCH_GRACE_SECONDS = 2.0
# After this long unclaimed, a job whose id is on no queue list was popped by a dead worker.
POPPED_JOB_SECONDS = 20.0


def tick(store: Store, dispatcher: Dispatcher, now: float | None = None) -> list[Dispatch]:
    """One pass; returns what it (re-)enqueued."""
    now = time.time() if now is None else now
    dispatches = store.wake_due(now)
    store.expire_timeouts(now)
    dispatches += recover_lost_nodes(store, now)
    unclaimed = store.pending_dispatches(now - DISPATCH_GRACE_SECONDS)
    lost = dispatcher.missing(unclaimed)
    lost_ids = {(d.execution_id, d.node_id, d.attempt) for d in lost}
    old = [
        d
        for d in store.pending_dispatches(now - POPPED_JOB_SECONDS)
        if (d.execution_id, d.node_id, d.attempt) not in lost_ids
    ]
    popped = dispatcher.not_in_queue(old)
    again = lost + popped
    if again:
        # Restart the grace period so one lost job is re-sent once per period, not every tick.
        for dispatch in again:
            Outbox.update(created_at=now).where(
                (Outbox.execution_id == dispatch.execution_id)
                & (Outbox.node_id == dispatch.node_id)
            ).execute()
    dispatches += again
    dispatcher.enqueue(dispatches)
    return dispatches
