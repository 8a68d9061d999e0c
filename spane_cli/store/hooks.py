"""Webhooks of workflows and the deliveries that started executions.

A hook row holds a random salt, never the secret: the secret is derived from the salt under
the server's key (engine/hook_secrets.py). A delivery is recorded in the transaction that
creates its execution, so a request either started a run and is remembered, or neither.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import peewee

from spane_cli.store.create import create_execution
from spane_cli.store.db import write_transaction
from spane_cli.store.models import Hook, HookDelivery
from spane_cli.store.records import Dispatch
from spane_cli.store.tx import Caches


@dataclass(frozen=True)
class HookInfo:
    workflow: str
    salt: str
    created_at: float
    deliveries: int
    last_delivery_at: float | None


@dataclass(frozen=True)
class PastDelivery:
    """A delivery already recorded, found by its signature or its delivery id."""

    delivery_id: str | None
    signature_digest: str
    execution_id: str


def save_hook(
    database: peewee.Database, workflow: str, salt: str, now: float | None = None
) -> None:
    """Create the workflow's hook, or give it a new salt (which rotates its secret)."""
    moment = time.time() if now is None else now
    with write_transaction(database):
        (
            Hook.insert(workflow=workflow, salt=salt, created_at=moment)
            .on_conflict(
                conflict_target=[Hook.workflow], update={Hook.salt: salt, Hook.created_at: moment}
            )
            .execute()
        )


def remove_hook(database: peewee.Database, workflow: str) -> bool:
    """Delete the workflow's hook; its past deliveries stay, so an old signed request is
    still a replay if the hook is made again. False when there was none."""
    with write_transaction(database):
        return bool(Hook.delete().where(Hook.workflow == workflow).execute())


def hook_salt(workflow: str) -> str | None:
    row = Hook.select(Hook.salt).where(Hook.workflow == workflow).first()
    return None if row is None else str(row.salt)


def hooks() -> list[HookInfo]:
    """Every hook, by workflow name, with how many deliveries it took and the last one."""
    grouped: Any = (
        HookDelivery.select(
            HookDelivery.workflow,
            peewee.fn.COUNT(HookDelivery.id),
            peewee.fn.MAX(HookDelivery.received_at),
        )
        .group_by(HookDelivery.workflow)
        .tuples()
    )
    counts = {str(workflow): (int(count), last) for workflow, count, last in grouped}
    return [
        HookInfo(
            workflow=row.workflow,
            salt=row.salt,
            created_at=row.created_at,
            deliveries=counts.get(row.workflow, (0, None))[0],
            last_delivery_at=counts.get(row.workflow, (0, None))[1],
        )
        for row in Hook.select().order_by(Hook.workflow)
    ]


def past_delivery(
    workflow: str, signature_digest: str, delivery_id: str | None
) -> PastDelivery | None:
    """The recorded delivery with this signature, else the one with this delivery id."""
    condition = HookDelivery.signature_digest == signature_digest
    if delivery_id is not None:
        condition |= HookDelivery.delivery_id == delivery_id
    rows = list(
        HookDelivery.select()
        .where((HookDelivery.workflow == workflow) & condition)
        .order_by(HookDelivery.id)
    )
    if not rows:
        return None
    row = next((r for r in rows if r.signature_digest == signature_digest), rows[0])
    return PastDelivery(row.delivery_id, row.signature_digest, row.execution_id)


def start_delivery(
    caches: Caches,
    workflow: str,
    version_id: int,
    workflow_input: Any,
    *,
    delivery_id: str | None,
    signature_digest: str,
    now: float | None = None,
) -> tuple[str, bool, list[Dispatch]]:
    """Create the execution of a verified delivery and record the delivery, in one
    transaction: (execution id, created?, dispatches). Two copies of one delivery arriving at
    once both get the first one's execution (the execution's idempotency key is the
    delivery's)."""
    moment = time.time() if now is None else now
    key = f"hook:{workflow}:{delivery_id if delivery_id is not None else signature_digest}"
    with write_transaction(caches.database):
        execution_id, created, dispatches = create_execution(
            caches, version_id, workflow_input, idempotency_key=key, now=moment
        )
        if created:
            HookDelivery.insert(
                workflow=workflow,
                delivery_id=delivery_id,
                signature_digest=signature_digest,
                execution_id=execution_id,
                received_at=moment,
            ).on_conflict_ignore().execute()
    return execution_id, created, dispatches
