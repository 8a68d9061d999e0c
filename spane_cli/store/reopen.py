"""Reopening failed work: `spane dlq replay` and `spane retry`.

The only way a terminal state changes (SPEC §3.5): failed nodes go back on a queue with a fresh
retry budget, their `upstream_failed` descendants become pending again, the execution is
running again, and all of it is recorded as events in one transaction.
"""

from __future__ import annotations

from collections.abc import Iterable

from spane_cli.errors import NotFound, OperationFailed
from spane_cli.states import ExecutionStatus, NodeStatus
from spane_cli.store import events
from spane_cli.store.models import DeadLetter, Execution, NodeRun
from spane_cli.store.records import Dispatch
from spane_cli.store.tx import Caches, Tx, transaction
from spane_cli.workflow.dag import descendants


def _reopen(tx: Tx, execution_id: str, failed_nodes: Iterable[str]) -> list[Dispatch]:
    """Inside a transaction: reopen `failed_nodes` and their upstream_failed descendants."""
    now = tx.now
    tx.lock_executions([execution_id])
    execution = Execution.get_by_id(execution_id)
    version = tx.version(execution.version_id)
    workflow = version.workflow
    rows = {r.node_id: r for r in NodeRun.select().where(NodeRun.execution == execution_id)}
    targets = [n for n in failed_nodes if rows[n].status == NodeStatus.FAILED]
    if not targets:
        return []
    needs = {node_id: list(node.needs) for node_id, node in workflow.nodes.items()}
    reset: set[str] = set()
    for target in targets:
        for child in descendants(needs, target):
            if rows[child].status == NodeStatus.UPSTREAM_FAILED:
                reset.add(child)
    # Every count below comes from the rows a guarded UPDATE moved, not from what was read:
    # a node another caller reopened meanwhile is neither queued nor counted twice.
    reopened: list[str] = []
    dispatches: list[Dispatch] = []
    for node_id in targets:
        attempt = rows[node_id].attempt + 1
        moved = (
            NodeRun.update(
                status=NodeStatus.QUEUED,
                attempt=attempt,
                attempt_offset=rows[node_id].attempt,
                lost_count=0,
                error=None,
                output=None,
                queued_at=now,
                started_at=None,
                finished_at=None,
                due_at=None,
            )
            .where(
                (NodeRun.execution == execution_id)
                & (NodeRun.node_id == node_id)
                & (NodeRun.status == NodeStatus.FAILED)
            )
            .execute()
        )
        if moved != 1:
            continue
        reopened.append(node_id)
        dispatches.append(Dispatch(execution_id, node_id, attempt, workflow.nodes[node_id].queue))
        tx.event(execution_id, node_id, events.NODE_QUEUED, {"attempt": attempt})
    if not reopened:
        return []
    back = set(reopened) | reset
    for node_id in sorted(reset):
        moved = (
            NodeRun.update(
                status=NodeStatus.PENDING,
                waiting_on=sum(1 for parent in needs[node_id] if parent in back),
                error=None,
                output=None,
                finished_at=None,
            )
            .where(
                (NodeRun.execution == execution_id)
                & (NodeRun.node_id == node_id)
                & (NodeRun.status == NodeStatus.UPSTREAM_FAILED)
            )
            .execute()
        )
        if moved == 1:
            reopened.append(node_id)
    tx.enqueue(dispatches)
    # A fresh deadline as long as the first one: the old one may be long past.
    deadline = (
        now + (execution.timeout_at - execution.created_at)
        if execution.timeout_at is not None
        else None
    )
    Execution.update(
        status=(
            ExecutionStatus.PAUSED
            if execution.status == ExecutionStatus.PAUSED
            else ExecutionStatus.RUNNING
        ),
        finished_at=None,
        error=None,
        output=None,
        timeout_at=deadline,
        remaining_nodes=Execution.remaining_nodes + len(reopened),
    ).where(Execution.id == execution_id).execute()
    tx.deadlines[execution_id] = deadline
    tx.event(execution_id, None, events.EXECUTION_RETRIED, {"nodes": sorted(reopened)})
    return dispatches


def replay_dead_letter(caches: Caches, letter_id: int, now: float | None = None) -> list[Dispatch]:
    """Reopen the node of one dead letter; refused when it was replayed before."""
    with transaction(caches, now) as tx:
        letter = DeadLetter.get_or_none(DeadLetter.id == letter_id)
        if letter is None:
            raise NotFound(f"no dead letter {letter_id}")
        if letter.replayed_at is not None:
            raise OperationFailed(f"dead letter {letter_id} was already replayed")
        tx.lock_executions([letter.execution_id])
        execution = Execution.get_or_none(Execution.id == letter.execution_id)
        if execution is None:
            raise NotFound(f"execution {letter.execution_id} of dead letter {letter_id} is gone")
        if execution.status == ExecutionStatus.CANCELLED:
            raise OperationFailed(f"execution {execution.id} was cancelled; resubmit it instead")
        claimed = (
            DeadLetter.update(replayed_at=tx.now)
            .where((DeadLetter.id == letter_id) & (DeadLetter.replayed_at.is_null()))
            .execute()
        )
        if claimed != 1:
            raise OperationFailed(f"dead letter {letter_id} was already replayed")
        dispatches = _reopen(tx, letter.execution_id, [letter.node_id])
        if not dispatches:
            raise OperationFailed(
                f"node {letter.node_id!r} of execution {letter.execution_id} is no longer failed"
            )
        tx.event(
            letter.execution_id,
            letter.node_id,
            events.DEAD_LETTER_REPLAYED,
            {"dead_letter": letter_id},
        )
    return dispatches


def retry_execution(caches: Caches, execution_id: str, now: float | None = None) -> list[Dispatch]:
    """Re-run only the failed nodes (and their upstream_failed descendants) of an execution."""
    with transaction(caches, now) as tx:
        # Locked before reading its status: of two concurrent retries, the second one sees
        # the execution running again and is refused.
        tx.lock_executions([execution_id])
        execution = Execution.get_or_none(Execution.id == execution_id)
        if execution is None:
            raise NotFound(f"no execution {execution_id!r}")
        if execution.status != ExecutionStatus.FAILED:
            raise OperationFailed(
                f"execution {execution_id} is {execution.status}; only failed ones can be retried"
            )
        failed = [
            row.node_id
            for row in NodeRun.select(NodeRun.node_id).where(
                (NodeRun.execution == execution_id) & (NodeRun.status == NodeStatus.FAILED)
            )
        ]
        dispatches = _reopen(tx, execution_id, failed)
        if not dispatches:
            raise OperationFailed(f"execution {execution_id} has no failed node to retry")
        DeadLetter.update(replayed_at=tx.now).where(
            (DeadLetter.execution_id == execution_id)
            & (DeadLetter.node_id.in_(failed))
            & (DeadLetter.replayed_at.is_null())
        ).execute()
    return dispatches


def purge_dead_letters(letter_ids: list[int] | None) -> int:
    query = DeadLetter.delete()
    if letter_ids is not None:
        query = query.where(DeadLetter.id.in_(letter_ids))
    return int(query.execute())
