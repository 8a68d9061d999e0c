"""Event type names. Every state change writes its events in its own transaction (tx.py)."""

from __future__ import annotations

EXECUTION_CREATED = "execution.created"
EXECUTION_STARTED = "execution.started"
EXECUTION_PAUSED = "execution.paused"
EXECUTION_RESUMED = "execution.resumed"
EXECUTION_CANCELLED = "execution.cancelled"
EXECUTION_SUCCEEDED = "execution.succeeded"
EXECUTION_FAILED = "execution.failed"
EXECUTION_RETRIED = "execution.retried"
NODE_QUEUED = "node.queued"
NODE_STARTED = "node.started"
NODE_WAITING = "node.waiting"
NODE_RETRYING = "node.retrying"
NODE_SUCCEEDED = "node.succeeded"
NODE_FAILED = "node.failed"
NODE_SKIPPED = "node.skipped"
NODE_UPSTREAM_FAILED = "node.upstream_failed"
NODE_CANCELLED = "node.cancelled"
NODE_LOST = "node.lost"
NODE_POOL_WAIT = "node.pool_wait"  # its pool was full: it waits, holding no worker
# A rate limit or an open circuit breaker put its start off: queued, without a job, until then.
NODE_DEFERRED = "node.deferred"
BREAKER_OPENED = "breaker.opened"  # on the execution whose node's failure opened it
BREAKER_CLOSED = "breaker.closed"  # on the execution whose probe succeeded
DEAD_LETTER_ADDED = "dead_letter.added"
DEAD_LETTER_REPLAYED = "dead_letter.replayed"


# The event of a node the cascade settles without running it, by its new status.
SETTLED_EVENT = {
    "skipped": NODE_SKIPPED,
    "upstream_failed": NODE_UPSTREAM_FAILED,
}
