"""One claim or one completion at a time through the store's production entry points (the
ones workers call with batches), for tests that walk an execution step by step."""

from __future__ import annotations

from spane_cli.store.records import ClaimedNode, Dispatch, Report
from spane_cli.store.store import Store


def claim_one(
    store: Store,
    execution_id: str,
    node_id: str,
    attempt: int,
    worker: str,
    now: float | None = None,
) -> ClaimedNode | None:
    claims = store.claim_nodes([(execution_id, node_id, attempt)], worker, now)
    return claims[0] if claims else None


def complete_one(
    store: Store, claim: ClaimedNode, report: Report, now: float | None = None
) -> list[Dispatch]:
    dispatches, _ = store.complete_nodes([(claim, report)], now=now)
    return dispatches
