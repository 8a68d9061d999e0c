"""Event types and writing them; every state change writes its event in the same transaction."""

from __future__ import annotations

from typing import Any

from spane_cli.store.models import Event

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
DEAD_LETTER_ADDED = "dead_letter.added"
DEAD_LETTER_REPLAYED = "dead_letter.replayed"


def emit(
    execution_id: str, event_type: str, now: float, node_id: str | None = None, **data: Any
) -> None:
    Event.insert(
        execution_id=execution_id,
        node_id=node_id,
        type=event_type,
        data=data or None,
        created_at=now,
    ).execute()
