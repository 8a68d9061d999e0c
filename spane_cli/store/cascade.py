"""What follows a node's end, applied in SQL: the scheduler's `cascade` decides which children
become ready, skipped or upstream-failed; this module gives it the node rows (count-downs,
parent states, settling) and queues the ready ones. Then the execution's count of remaining
nodes goes down, and the execution finishes when it reaches zero."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from spane_cli import scheduler
from spane_cli.states import ACTIVE_EXECUTION, NodeStatus
from spane_cli.store import events, finish, pools, sql
from spane_cli.store.claim import claim_ready_child
from spane_cli.store.records import ExecutionInfo, dispatch_of
from spane_cli.store.tx import Tx
from spane_cli.store.versions import LoadedVersion
from spane_cli.workflow.model import Node


class NodeRows:
    """The scheduler's `CascadeStore` on the `node_run` rows of one execution."""

    def __init__(self, tx: Tx, execution_id: str, why: dict[str, Any] | None = None) -> None:
        self.tx = tx
        self.execution_id = execution_id
        self.why = why  # extra event data (a repair says so)

    def count_down(self, decrements: Mapping[str, int]) -> list[str]:
        unblocked: list[str] = []
        for decrement in sorted(set(decrements.values())):
            group = sorted(c for c, n in decrements.items() if n == decrement)
            for member, values in sql.member_of(self.tx.database, group):
                rows = self.tx.run(
                    "UPDATE node_run SET waiting_on = waiting_on - ?"
                    f" WHERE execution_id = ? AND status = 'pending' AND node_id {member}"
                    " RETURNING node_id, waiting_on",
                    (decrement, self.execution_id, *values),
                ).fetchall()
                unblocked += [row[0] for row in rows if row[1] <= 0]
        return unblocked

    def parent_states(self, node_ids: Sequence[str]) -> dict[str, scheduler.ParentState]:
        states: dict[str, scheduler.ParentState] = {}
        for member, values in sql.member_of(self.tx.database, node_ids):
            for node_id, status, chosen in self.tx.run(
                "SELECT node_id, status, chosen FROM node_run WHERE execution_id = ?"
                f" AND node_id {member}",
                (self.execution_id, *values),
            ).fetchall():
                choice = sql.loads(chosen)
                states[node_id] = scheduler.ParentState(
                    NodeStatus(status), tuple(choice) if choice is not None else None
                )
        return states

    def settle(self, status: NodeStatus, node_ids: Sequence[str]) -> list[str]:
        changed: set[str] = set()
        for member, values in sql.member_of(self.tx.database, node_ids):
            changed.update(
                row[0]
                for row in self.tx.run(
                    "UPDATE node_run SET status = ?, finished_at = ?, waiting_on = 0"
                    f" WHERE execution_id = ? AND status = 'pending' AND node_id {member}"
                    " RETURNING node_id",
                    (str(status), self.tx.now, self.execution_id, *values),
                ).fetchall()
            )
        settled = [n for n in node_ids if n in changed]
        for node_id in settled:
            self.tx.event(self.execution_id, node_id, events.SETTLED_EVENT[status], self.why)
        return settled


def after_terminal(
    tx: Tx,
    info: ExecutionInfo,
    version: LoadedVersion,
    finished: Mapping[str, scheduler.ParentState],
    finished_outputs: Mapping[str, Any] | None = None,
) -> None:
    """Apply the cascade that follows `finished` (nodes that just became terminal)."""
    result = scheduler.cascade(version.workflow, version.children, finished, NodeRows(tx, info.id))
    row = tx.run(
        "UPDATE execution SET remaining_nodes = remaining_nodes - ? WHERE id = ?"
        " RETURNING remaining_nodes, status",
        (result.ended, info.id),
    ).fetchone()
    remaining, execution_status = (int(row[0]), row[1]) if row else (1, None)
    if result.ready:
        queue_ready(tx, info, version, result.ready, execution_status, finished_outputs)
    if remaining <= 0:
        finish.finish_execution(tx, info.id, version)


def queue_ready(
    tx: Tx,
    info: ExecutionInfo,
    version: LoadedVersion,
    ready: list[str],
    execution_status: str | None,
    finished_outputs: Mapping[str, Any] | None,
) -> None:
    """pending -> queued with outbox rows; or, for the one child this worker takes at once,
    pending -> running with no job at all."""
    workflow = version.workflow
    direct: str | None = None
    if tx.claim_for is not None and tx.next_claim is None and execution_status in ACTIVE_EXECUTION:
        queues = tx.claim_for[1]
        # A node that takes a pool slot goes through the queue: its claim may have to wait;
        # so does one whose start a rate limit or a breaker decides (engine/gates.py).
        direct = next((c for c in ready if _direct(workflow.nodes[c], queues)), None)
    candidates = [c for c in ready if c != direct]
    changed: set[str] = set()
    for member, values in sql.member_of(tx.database, candidates):
        changed.update(
            row[0]
            for row in tx.run(
                "UPDATE node_run SET status = 'queued', attempt = 1, queued_at = ?,"
                " waiting_on = 0 WHERE execution_id = ? AND status = 'pending'"
                f" AND node_id {member} RETURNING node_id",
                (tx.now, info.id, *values),
            ).fetchall()
        )
    queued = [c for c in candidates if c in changed]
    tx.enqueue([dispatch_of(info.id, workflow.nodes[c], 1) for c in queued])
    first_attempt = {"attempt": 1}  # one dict for every row: encoded once
    for node_id in queued:
        tx.event(info.id, node_id, events.NODE_QUEUED, first_attempt)
    if direct is not None:
        claim_ready_child(tx, info, version, direct, finished_outputs)


def _direct(node: Node, queues: frozenset[str]) -> bool:
    """Whether a worker of `queues` may take this ready child at once, past Redis."""
    if node.queue not in queues or pools.slot_pool(node) is not None:
        return False
    return not (node.gated and node.foreach is None)
