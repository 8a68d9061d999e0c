"""Every state change of executions and nodes, each a guarded UPDATE in one transaction.

A guarded UPDATE names the statuses it may leave (`WHERE status IN (...)`) and the attempt it
is about, so a duplicate, late or stale job changes nothing. Each change writes its event, and
any dispatch intent (outbox row), in the same transaction; deciding which children become ready
happens in the transaction that finishes their parent.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import peewee

from spane_cli.engine import scheduler
from spane_cli.engine.states import ExecutionStatus, NodeStatus
from spane_cli.errors import NotFound, OperationFailed
from spane_cli.store import events
from spane_cli.store.db import write_transaction
from spane_cli.store.models import (
    DeadLetter,
    Execution,
    NodeLog,
    NodeRun,
    Outbox,
    WorkflowVersion,
    database_proxy,
)
from spane_cli.store.versions import LoadedVersion, VersionCache
from spane_cli.workflow.expressions import ExpressionError, render_value

MAX_DEPTH = 10
MAX_LOST = 3
ACTIVE_EXECUTION = (ExecutionStatus.PENDING, ExecutionStatus.RUNNING)
OPEN_EXECUTION = (ExecutionStatus.PENDING, ExecutionStatus.RUNNING, ExecutionStatus.PAUSED)


@dataclass(frozen=True)
class Dispatch:
    """One job to put on a queue: look at node `node_id` of `execution_id`, attempt `attempt`."""

    execution_id: str
    node_id: str
    attempt: int
    queue: str


@dataclass
class ClaimedNode:
    execution_id: str
    node_id: str
    attempt: int
    version: LoadedVersion
    workflow_input: Any
    parent_outputs: dict[str, Any]
    timeout_at: float | None


@dataclass
class Outcome:
    """What a worker reports for a claimed node (a simplified NodeResult)."""

    status: str  # "succeeded" | "failed" | "wait" | "child"
    output: Any = None
    error: str | None = None
    logs: str = ""
    wait_until: float | None = None
    chosen: list[str] | None = None
    child_reference: str | None = None
    child_input: Any = None
    items: dict[str, int] | None = None


@dataclass
class _Batch:
    """What one transaction decided: jobs to enqueue once it commits."""

    dispatches: list[Dispatch] = field(default_factory=list)


class Store:
    def __init__(self, database: peewee.Database) -> None:
        self.database = database
        database_proxy.initialize(database)
        self.versions = VersionCache()

    def close(self) -> None:
        if not self.database.is_closed():
            self.database.close()

    # -- creating executions -----------------------------------------------------------------

    def create_execution(
        self,
        version_id: int,
        workflow_input: Any,
        *,
        idempotency_key: str | None = None,
        timeout: float | None = None,
        now: float | None = None,
    ) -> tuple[str, bool, list[Dispatch]]:
        """(execution id, created?, dispatches). The same idempotency key gives the same id."""
        now = time.time() if now is None else now
        if idempotency_key:
            existing = Execution.get_or_none(Execution.idempotency_key == idempotency_key)
            if existing is not None:
                return existing.id, False, []
        batch = _Batch()
        try:
            with write_transaction(self.database):
                execution_id = self._insert_execution(
                    version_id, workflow_input, idempotency_key, timeout, now, batch, None, 0
                )
        except peewee.IntegrityError:
            if idempotency_key:
                existing = Execution.get_or_none(Execution.idempotency_key == idempotency_key)
                if existing is not None:
                    return existing.id, False, []
            raise
        return execution_id, True, batch.dispatches

    def _insert_execution(
        self,
        version_id: int,
        workflow_input: Any,
        idempotency_key: str | None,
        timeout: float | None,
        now: float,
        batch: _Batch,
        parent: tuple[str, str] | None,
        depth: int,
    ) -> str:
        version = self.versions.get(version_id)
        workflow = version.workflow
        execution_id = str(uuid.uuid4())
        limit = timeout if timeout is not None else workflow.timeout
        Execution.insert(
            id=execution_id,
            version=version_id,
            workflow=workflow.name,
            status=ExecutionStatus.PENDING,
            input=workflow_input,
            idempotency_key=idempotency_key,
            remaining_nodes=len(workflow.nodes),
            timeout_at=now + limit if limit else None,
            created_at=now,
            parent_id=parent[0] if parent else None,
            parent_node_id=parent[1] if parent else None,
            depth=depth,
        ).execute()
        rows = []
        event_rows: list[tuple[str, str | None, str, dict[str, Any] | None]] = [
            (execution_id, None, events.EXECUTION_CREATED, {"workflow": workflow.name})
        ]
        for node in workflow.nodes.values():
            entry = not node.needs
            rows.append(
                {
                    "execution": execution_id,
                    "node_id": node.id,
                    "status": NodeStatus.QUEUED if entry else NodeStatus.PENDING,
                    "attempt": 1 if entry else 0,
                    "waiting_on": len(node.needs),
                    "queue": node.queue,
                    "queued_at": now if entry else None,
                }
            )
            if entry:
                event_rows.append((execution_id, node.id, events.NODE_QUEUED, {"attempt": 1}))
                batch.dispatches.append(Dispatch(execution_id, node.id, 1, node.queue))
        for start in range(0, len(rows), 500):
            NodeRun.insert_many(rows[start : start + 500]).execute()
        self._write_outbox(batch.dispatches[-len(workflow.entry_nodes) :], now)
        events.emit_many(event_rows, now)
        return execution_id

    @staticmethod
    def _write_outbox(dispatches: Sequence[Dispatch], now: float) -> None:
        rows = [
            {
                "execution_id": d.execution_id,
                "node_id": d.node_id,
                "attempt": d.attempt,
                "queue": d.queue,
                "created_at": now,
            }
            for d in dispatches
        ]
        for start in range(0, len(rows), 500):
            Outbox.insert_many(rows[start : start + 500]).execute()

    # -- claiming ----------------------------------------------------------------------------

    def claim_node(
        self, execution_id: str, node_id: str, attempt: int, worker: str, now: float | None = None
    ) -> ClaimedNode | None:
        """queued -> running for exactly this attempt, or None when the job is stale."""
        now = time.time() if now is None else now
        with write_transaction(self.database):
            execution = (
                Execution.select(
                    Execution.status, Execution.version, Execution.input, Execution.timeout_at
                )
                .where(Execution.id == execution_id)
                .first()
            )
            if execution is None or execution.status not in ACTIVE_EXECUTION:
                return None  # paused: stays queued with its outbox row until resume
            claimed = (
                NodeRun.update(status=NodeStatus.RUNNING, started_at=now, worker=worker)
                .where(
                    (NodeRun.execution == execution_id)
                    & (NodeRun.node_id == node_id)
                    & (NodeRun.attempt == attempt)
                    & (NodeRun.status == NodeStatus.QUEUED)
                )
                .execute()
            )
            if claimed != 1:
                return None
            Outbox.delete().where(
                (Outbox.execution_id == execution_id) & (Outbox.node_id == node_id)
            ).execute()
            if execution.status == ExecutionStatus.PENDING:
                started = (
                    Execution.update(status=ExecutionStatus.RUNNING, started_at=now)
                    .where(
                        (Execution.id == execution_id)
                        & (Execution.status == ExecutionStatus.PENDING)
                    )
                    .execute()
                )
                if started:
                    events.emit(execution_id, events.EXECUTION_STARTED, now)
            events.emit(execution_id, events.NODE_STARTED, now, node_id, attempt=attempt)
            version = self.versions.get(execution.version_id)
            needs = version.workflow.nodes[node_id].needs
            parent_outputs: dict[str, Any] = {}
            if needs:
                for row in NodeRun.select(NodeRun.node_id, NodeRun.status, NodeRun.output).where(
                    (NodeRun.execution == execution_id) & (NodeRun.node_id.in_(list(needs)))
                ):
                    # A failed parent (continue_on_fail) or a skipped one hands on null.
                    succeeded = row.status == NodeStatus.SUCCEEDED
                    parent_outputs[row.node_id] = row.output if succeeded else None
        return ClaimedNode(
            execution_id=execution_id,
            node_id=node_id,
            attempt=attempt,
            version=version,
            workflow_input=execution.input,
            parent_outputs=parent_outputs,
            timeout_at=execution.timeout_at,
        )

    # -- completing --------------------------------------------------------------------------

    def complete_node(
        self, claim: ClaimedNode, outcome: Outcome, now: float | None = None
    ) -> list[Dispatch]:
        """Record what the worker reports; returns the jobs to enqueue. Stale reports are no-ops."""
        now = time.time() if now is None else now
        batch = _Batch()
        try:
            with write_transaction(self.database):
                self._record(
                    claim.execution_id,
                    claim.node_id,
                    claim.attempt,
                    NodeStatus.RUNNING,
                    outcome,
                    now,
                    batch,
                )
        except _StaleReport:
            return []
        return batch.dispatches

    def _record(
        self,
        execution_id: str,
        node_id: str,
        attempt: int,
        from_status: NodeStatus,
        outcome: Outcome,
        now: float,
        batch: _Batch,
        use_attempt: bool = True,
    ) -> bool:
        execution = Execution.get_or_none(Execution.id == execution_id)
        if execution is None:
            return False
        version = self.versions.get(execution.version_id)
        node = version.workflow.nodes[node_id]
        guard = (
            (NodeRun.execution == execution_id)
            & (NodeRun.node_id == node_id)
            & (NodeRun.attempt == attempt)
            & (NodeRun.status == from_status)
        )
        if outcome.logs:
            NodeLog.insert(
                execution_id=execution_id,
                node_id=node_id,
                attempt=attempt,
                text=outcome.logs,
                created_at=now,
            ).execute()
        if outcome.status == "succeeded":
            changed = (
                NodeRun.update(
                    status=NodeStatus.SUCCEEDED,
                    output=outcome.output,
                    error=None,
                    chosen=outcome.chosen,
                    items=outcome.items,
                    finished_at=now,
                    lost_count=0,
                    due_at=None,
                )
                .where(guard)
                .execute()
            )
            if changed != 1:
                return False
            events.emit(execution_id, events.NODE_SUCCEEDED, now, node_id, attempt=attempt)
            self._after_terminal(execution, version, [node_id], now, batch)
            return True
        if outcome.status == "skipped":
            changed = (
                NodeRun.update(status=NodeStatus.SKIPPED, finished_at=now, due_at=None)
                .where(guard)
                .execute()
            )
            if changed != 1:
                return False
            events.emit(execution_id, events.NODE_SKIPPED, now, node_id, reason="when")
            self._after_terminal(execution, version, [node_id], now, batch)
            return True
        if outcome.status == "wait":
            wait_until = outcome.wait_until if outcome.wait_until is not None else now
            changed = (
                NodeRun.update(status=NodeStatus.WAITING, output=outcome.output, due_at=wait_until)
                .where(guard)
                .execute()
            )
            if changed == 1:
                events.emit(
                    execution_id,
                    events.NODE_WAITING,
                    now,
                    node_id,
                    until=wait_until,
                    attempt=attempt,
                )
            return changed == 1
        if outcome.status == "child":
            return self._start_child(
                execution, version, node_id, attempt, guard, outcome, now, batch
            )
        # failed
        offset = (
            NodeRun.select(NodeRun.attempt_offset)
            .where((NodeRun.execution == execution_id) & (NodeRun.node_id == node_id))
            .scalar()
            or 0
        )
        budget_used = attempt - int(offset)
        next_delay = scheduler.next_retry_delay(node, budget_used) if use_attempt else None
        if next_delay is not None:
            changed = (
                NodeRun.update(
                    status=NodeStatus.RETRYING,
                    error=outcome.error,
                    output=outcome.output,
                    due_at=now + next_delay,
                    finished_at=now,
                )
                .where(guard)
                .execute()
            )
            if changed != 1:
                return False
            events.emit(
                execution_id,
                events.NODE_RETRYING,
                now,
                node_id,
                attempt=attempt,
                error=_first_line(outcome.error),
                next_attempt_at=now + next_delay,
            )
            if next_delay <= 0:
                self._requeue(execution_id, node_id, attempt + 1, node.queue, now, batch)
            return True
        changed = (
            NodeRun.update(
                status=NodeStatus.FAILED,
                error=outcome.error or "failed",
                output=outcome.output,
                finished_at=now,
                due_at=None,
            )
            .where(guard)
            .execute()
        )
        if changed != 1:
            return False
        events.emit(
            execution_id,
            events.NODE_FAILED,
            now,
            node_id,
            attempt=attempt,
            error=_first_line(outcome.error),
        )
        if not node.continue_on_fail:
            inputs = scheduler.node_input(
                version.workflow, node_id, execution.input, self._outputs(execution_id, node.needs)
            )
            letter = DeadLetter.create(
                execution_id=execution_id,
                workflow=execution.workflow,
                node_id=node_id,
                error=outcome.error or "failed",
                attempts=attempt - int(offset),
                input=inputs,
                created_at=now,
            )
            events.emit(execution_id, events.DEAD_LETTER_ADDED, now, node_id, dead_letter=letter.id)
        self._after_terminal(execution, version, [node_id], now, batch)
        return True

    def _requeue(
        self, execution_id: str, node_id: str, attempt: int, queue: str, now: float, batch: _Batch
    ) -> None:
        NodeRun.update(
            status=NodeStatus.QUEUED, attempt=attempt, queued_at=now, due_at=None, worker=None
        ).where(
            (NodeRun.execution == execution_id)
            & (NodeRun.node_id == node_id)
            & (NodeRun.status.in_([NodeStatus.RETRYING, NodeStatus.RUNNING]))
        ).execute()
        dispatch = Dispatch(execution_id, node_id, attempt, queue)
        self._write_outbox([dispatch], now)
        events.emit(execution_id, events.NODE_QUEUED, now, node_id, attempt=attempt)
        batch.dispatches.append(dispatch)

    def _outputs(self, execution_id: str, node_ids: Iterable[str]) -> dict[str, Any]:
        wanted = list(node_ids)
        if not wanted:
            return {}
        return {
            row.node_id: row.output
            for row in NodeRun.select(NodeRun.node_id, NodeRun.output).where(
                (NodeRun.execution == execution_id) & (NodeRun.node_id.in_(wanted))
            )
        }

    # -- deciding children -------------------------------------------------------------------

    def _after_terminal(
        self,
        execution: Execution,
        version: LoadedVersion,
        finished: list[str],
        now: float,
        batch: _Batch,
    ) -> None:
        """Children of newly terminal nodes: count down, decide, cascade skips; maybe finish."""
        workflow = version.workflow
        execution_id = execution.id
        terminal_count = 0
        frontier = list(finished)
        while frontier:
            terminal_count += len(frontier)
            counts: dict[str, int] = {}
            for node_id in frontier:
                for child in version.children[node_id]:
                    counts[child] = counts.get(child, 0) + 1
            frontier = []
            if not counts:
                break
            unblocked: list[str] = []
            for decrement in sorted(set(counts.values())):
                group = sorted(c for c, n in counts.items() if n == decrement)
                rows = (
                    NodeRun.update(waiting_on=NodeRun.waiting_on - decrement)
                    .where(
                        (NodeRun.execution == execution_id)
                        & (NodeRun.node_id.in_(group))
                        & (NodeRun.status == NodeStatus.PENDING)
                    )
                    .returning(NodeRun.node_id, NodeRun.waiting_on)
                    .execute()
                )
                unblocked += [row.node_id for row in rows if row.waiting_on <= 0]
            if not unblocked:
                continue
            parents = sorted({p for c in unblocked for p in workflow.nodes[c].needs})
            views = {
                row.node_id: row
                for row in NodeRun.select(NodeRun.node_id, NodeRun.status, NodeRun.chosen).where(
                    (NodeRun.execution == execution_id) & (NodeRun.node_id.in_(parents))
                )
            }
            ready: list[str] = []
            by_status: dict[NodeStatus, list[str]] = {
                NodeStatus.SKIPPED: [],
                NodeStatus.UPSTREAM_FAILED: [],
            }
            for child in sorted(unblocked):
                node = workflow.nodes[child]
                parent_views = {
                    p: scheduler.ParentView(
                        status=NodeStatus(views[p].status),
                        continue_on_fail=workflow.nodes[p].continue_on_fail,
                        chose_child=(
                            child in (views[p].chosen or [])
                            if workflow.nodes[p].type == "branch"
                            and views[p].status == NodeStatus.SUCCEEDED
                            else None
                        ),
                    )
                    for p in node.needs
                }
                decision = scheduler.child_readiness(node.trigger, parent_views)
                if decision == scheduler.Readiness.READY:
                    ready.append(child)
                elif decision == scheduler.Readiness.SKIPPED:
                    by_status[NodeStatus.SKIPPED].append(child)
                elif decision == scheduler.Readiness.UPSTREAM_FAILED:
                    by_status[NodeStatus.UPSTREAM_FAILED].append(child)
            if ready:
                NodeRun.update(status=NodeStatus.QUEUED, attempt=1, queued_at=now).where(
                    (NodeRun.execution == execution_id)
                    & (NodeRun.node_id.in_(ready))
                    & (NodeRun.status == NodeStatus.PENDING)
                ).execute()
                dispatches = [Dispatch(execution_id, c, 1, workflow.nodes[c].queue) for c in ready]
                self._write_outbox(dispatches, now)
                events.emit_many(
                    [(execution_id, c, events.NODE_QUEUED, {"attempt": 1}) for c in ready], now
                )
                batch.dispatches.extend(dispatches)
            for status, node_ids in by_status.items():
                if not node_ids:
                    continue
                NodeRun.update(status=status, finished_at=now).where(
                    (NodeRun.execution == execution_id)
                    & (NodeRun.node_id.in_(node_ids))
                    & (NodeRun.status == NodeStatus.PENDING)
                ).execute()
                event_type = (
                    events.NODE_SKIPPED
                    if status == NodeStatus.SKIPPED
                    else events.NODE_UPSTREAM_FAILED
                )
                events.emit_many([(execution_id, c, event_type, None) for c in node_ids], now)
                frontier.extend(node_ids)
        remaining = (
            Execution.update(remaining_nodes=Execution.remaining_nodes - terminal_count)
            .where(Execution.id == execution_id)
            .returning(Execution.remaining_nodes)
            .execute()
        )
        left = [row.remaining_nodes for row in remaining]
        if left and left[0] <= 0:
            self._finish_execution(execution_id, version, now, batch)

    # -- finishing ---------------------------------------------------------------------------

    def _finish_execution(
        self, execution_id: str, version: LoadedVersion, now: float, batch: _Batch
    ) -> None:
        execution = Execution.get_by_id(execution_id)
        if execution.status not in OPEN_EXECUTION:
            return
        rows = list(
            NodeRun.select(NodeRun.node_id, NodeRun.status, NodeRun.output, NodeRun.error).where(
                NodeRun.execution == execution_id
            )
        )
        statuses = {row.node_id: NodeStatus(row.status) for row in rows}
        result = scheduler.execution_result(version.workflow, statuses) or ExecutionStatus.FAILED
        outputs = {row.node_id: row.output for row in rows}
        error: str | None = None
        output: Any = None
        if result == ExecutionStatus.FAILED:
            failed = [
                row
                for row in rows
                if row.status == NodeStatus.FAILED
                and not version.workflow.nodes[row.node_id].continue_on_fail
            ]
            if failed:
                error = f"node {failed[0].node_id!r} failed: {_first_line(failed[0].error)}"
                if len(failed) > 1:
                    error += f" (and {len(failed) - 1} more failed nodes)"
            else:
                error = "nodes were not run because their parents failed"
        else:
            try:
                output = self._execution_output(version, execution.input, rows, outputs)
            except ExpressionError as exc:
                result, error = ExecutionStatus.FAILED, f"output: {exc}"
        changed = (
            Execution.update(status=result, output=output, error=error, finished_at=now)
            .where((Execution.id == execution_id) & (Execution.status.in_(list(OPEN_EXECUTION))))
            .execute()
        )
        if changed != 1:
            return
        event_type = (
            events.EXECUTION_SUCCEEDED
            if result == ExecutionStatus.SUCCEEDED
            else events.EXECUTION_FAILED
        )
        events.emit(execution_id, event_type, now, error=error) if error else events.emit(
            execution_id, event_type, now
        )
        if execution.parent_id and execution.parent_node_id:
            self._child_finished(execution, result, output, error, now, batch)

    @staticmethod
    def _execution_output(
        version: LoadedVersion, workflow_input: Any, rows: list[NodeRun], outputs: dict[str, Any]
    ) -> Any:
        workflow = version.workflow
        if workflow.output is None:
            return scheduler.default_output(workflow, outputs)
        scope = {
            "input": workflow_input,
            "nodes": {
                row.node_id: {"output": row.output, "status": row.status, "error": row.error}
                for row in rows
            },
            "workflow": {"name": workflow.name},
        }
        return render_value(workflow.output, scope)

    # -- sub-workflows -----------------------------------------------------------------------

    def _start_child(
        self,
        execution: Execution,
        version: LoadedVersion,
        node_id: str,
        attempt: int,
        guard: Any,
        outcome: Outcome,
        now: float,
        batch: _Batch,
    ) -> bool:
        reference = outcome.child_reference or ""
        child_version_id = version.refs.get(reference)
        failure: str | None = None
        if child_version_id is None:
            failure = f"sub-workflow {reference!r} was not registered with this workflow"
        elif execution.depth + 1 >= MAX_DEPTH:
            failure = f"sub-workflows nest deeper than {MAX_DEPTH} levels"
        if failure is not None or child_version_id is None:
            return self._record(
                execution.id,
                node_id,
                attempt,
                NodeStatus.RUNNING,
                Outcome("failed", error=failure),
                now,
                batch,
            )
        child_id = self._insert_execution(
            child_version_id,
            outcome.child_input,
            None,
            None,
            now,
            batch,
            (execution.id, node_id),
            execution.depth + 1,
        )
        changed = (
            NodeRun.update(status=NodeStatus.WAITING, child_execution_id=child_id, due_at=None)
            .where(guard)
            .execute()
        )
        if changed != 1:
            raise _StaleReport()  # roll back the child we just created
        events.emit(execution.id, events.NODE_WAITING, now, node_id, child_execution=child_id)
        return True

    def _child_finished(
        self,
        child: Execution,
        result: ExecutionStatus,
        output: Any,
        error: str | None,
        now: float,
        batch: _Batch,
    ) -> None:
        parent_node = NodeRun.get_or_none(
            (NodeRun.execution == child.parent_id)
            & (NodeRun.node_id == child.parent_node_id)
            & (NodeRun.child_execution_id == child.id)
        )
        if parent_node is None or parent_node.status != NodeStatus.WAITING:
            return
        if result == ExecutionStatus.SUCCEEDED:
            outcome = Outcome("succeeded", output=output)
        else:
            outcome = Outcome(
                "failed", error=f"sub-workflow execution {child.id} {result}: {error or ''}"
            )
        self._record(
            str(child.parent_id),
            str(child.parent_node_id),
            parent_node.attempt,
            NodeStatus.WAITING,
            outcome,
            now,
            batch,
        )

    # -- time-driven transitions (reconciler) ------------------------------------------------

    def wake_due(self, now: float | None = None, limit: int = 500) -> list[Dispatch]:
        """Delays that are over complete; retries that are due go back on a queue."""
        now = time.time() if now is None else now
        batch = _Batch()
        due = list(
            NodeRun.select(NodeRun.execution, NodeRun.node_id, NodeRun.attempt, NodeRun.status)
            .join(Execution)
            .where(
                (NodeRun.status.in_([NodeStatus.WAITING, NodeStatus.RETRYING]))
                & (NodeRun.due_at <= now)
                & (NodeRun.child_execution_id.is_null())
                & (Execution.status.in_(list(ACTIVE_EXECUTION)))
            )
            .limit(limit)
        )
        for row in due:
            with write_transaction(self.database):
                if row.status == NodeStatus.WAITING:
                    current = NodeRun.get_or_none(
                        (NodeRun.execution == row.execution_id) & (NodeRun.node_id == row.node_id)
                    )
                    if current is None or current.status != NodeStatus.WAITING:
                        continue
                    self._record(
                        row.execution_id,
                        row.node_id,
                        row.attempt,
                        NodeStatus.WAITING,
                        Outcome("succeeded", output=current.output),
                        now,
                        batch,
                    )
                else:
                    version = self.versions.get(Execution.get_by_id(row.execution_id).version_id)
                    queue = version.workflow.nodes[row.node_id].queue
                    moved = (
                        NodeRun.update(status=NodeStatus.QUEUED)
                        .where(
                            (NodeRun.execution == row.execution_id)
                            & (NodeRun.node_id == row.node_id)
                            & (NodeRun.status == NodeStatus.RETRYING)
                            & (NodeRun.attempt == row.attempt)
                        )
                        .execute()
                    )
                    if moved:
                        NodeRun.update(status=NodeStatus.RETRYING).where(
                            (NodeRun.execution == row.execution_id)
                            & (NodeRun.node_id == row.node_id)
                        ).execute()
                        self._requeue(
                            row.execution_id, row.node_id, row.attempt + 1, queue, now, batch
                        )
        return batch.dispatches

    def pending_dispatches(self, older_than: float, limit: int = 1000) -> list[Dispatch]:
        """Outbox rows older than `older_than` (epoch): dispatch intent not yet claimed."""
        rows = (
            Outbox.select()
            .join(Execution, on=(Outbox.execution_id == Execution.id))
            .where(
                (Outbox.created_at <= older_than) & (Execution.status.in_(list(ACTIVE_EXECUTION)))
            )
            .order_by(Outbox.id)
            .limit(limit)
        )
        return [Dispatch(r.execution_id, r.node_id, r.attempt, r.queue) for r in rows]

    def expire_timeouts(self, now: float | None = None) -> list[str]:
        """Executions past their whole-execution timeout fail; returns their ids."""
        now = time.time() if now is None else now
        expired = [
            row.id
            for row in Execution.select(Execution.id).where(
                (Execution.status.in_(list(OPEN_EXECUTION)))
                & (Execution.timeout_at.is_null(False))
                & (Execution.timeout_at <= now)
            )
        ]
        for execution_id in expired:
            self._end_execution(execution_id, ExecutionStatus.FAILED, "execution timed out", now)
        return expired

    # -- lifecycle ---------------------------------------------------------------------------

    def cancel(self, execution_id: str, now: float | None = None) -> bool:
        """Open -> cancelled with every unfinished node; False when it had already ended."""
        now = time.time() if now is None else now
        self.require_execution(execution_id)
        return self._end_execution(execution_id, ExecutionStatus.CANCELLED, None, now)

    def _end_execution(
        self, execution_id: str, status: ExecutionStatus, error: str | None, now: float
    ) -> bool:
        batch = _Batch()
        with write_transaction(self.database):
            changed = (
                Execution.update(status=status, error=error, finished_at=now)
                .where(
                    (Execution.id == execution_id) & (Execution.status.in_(list(OPEN_EXECUTION)))
                )
                .execute()
            )
            if changed != 1:
                return False
            open_nodes = [
                row.node_id
                for row in NodeRun.select(NodeRun.node_id).where(
                    (NodeRun.execution == execution_id)
                    & (NodeRun.status.not_in([s.value for s in _TERMINAL_NODE]))
                )
            ]
            NodeRun.update(status=NodeStatus.CANCELLED, finished_at=now).where(
                (NodeRun.execution == execution_id) & (NodeRun.node_id.in_(open_nodes))
            ).execute()
            Outbox.delete().where(Outbox.execution_id == execution_id).execute()
            events.emit_many(
                [(execution_id, n, events.NODE_CANCELLED, None) for n in open_nodes], now
            )
            event_type = (
                events.EXECUTION_CANCELLED
                if status == ExecutionStatus.CANCELLED
                else events.EXECUTION_FAILED
            )
            events.emit(execution_id, event_type, now, error=error) if error else events.emit(
                execution_id, event_type, now
            )
            # Children of waiting sub-workflow nodes end with their parent.
            children = [
                row.id
                for row in Execution.select(Execution.id).where(
                    (Execution.parent_id == execution_id)
                    & (Execution.status.in_(list(OPEN_EXECUTION)))
                )
            ]
            execution = Execution.get_by_id(execution_id)
            if execution.parent_id and status != ExecutionStatus.CANCELLED:
                version = self.versions.get(execution.version_id)
                del version  # the parent's own workflow is loaded by _child_finished
                self._child_finished(execution, status, None, error, now, batch)
        for child_id in children:
            self._end_execution(child_id, status, error, now)
        return True

    def require_execution(self, execution_id: str) -> Execution:
        execution = Execution.get_or_none(Execution.id == execution_id)
        if execution is None:
            raise NotFound(f"no execution {execution_id!r}")
        return execution

    def set_paused(
        self, execution_id: str, paused: bool, now: float | None = None
    ) -> list[Dispatch]:
        """Pause stops new claims; resume re-dispatches what is queued."""
        now = time.time() if now is None else now
        self.require_execution(execution_id)
        with write_transaction(self.database):
            if paused:
                changed = (
                    Execution.update(status=ExecutionStatus.PAUSED)
                    .where(
                        (Execution.id == execution_id)
                        & (Execution.status.in_(list(ACTIVE_EXECUTION)))
                    )
                    .execute()
                )
                if changed != 1:
                    raise OperationFailed(f"execution {execution_id} is not running")
                events.emit(execution_id, events.EXECUTION_PAUSED, now)
                return []
            changed = (
                Execution.update(status=ExecutionStatus.RUNNING)
                .where(
                    (Execution.id == execution_id) & (Execution.status == ExecutionStatus.PAUSED)
                )
                .execute()
            )
            if changed != 1:
                raise OperationFailed(f"execution {execution_id} is not paused")
            events.emit(execution_id, events.EXECUTION_RESUMED, now)
            rows = Outbox.select().where(Outbox.execution_id == execution_id)
            return [Dispatch(r.execution_id, r.node_id, r.attempt, r.queue) for r in rows]


class _StaleReport(Exception):
    """Raised inside a transaction to roll it back when a guarded update found nothing."""


_TERMINAL_NODE = (
    NodeStatus.SUCCEEDED,
    NodeStatus.FAILED,
    NodeStatus.SKIPPED,
    NodeStatus.CANCELLED,
    NodeStatus.UPSTREAM_FAILED,
)


def _first_line(text: str | None) -> str:
    return (text or "").strip().splitlines()[0] if (text or "").strip() else ""


__all__ = ["ClaimedNode", "Dispatch", "Outcome", "Store", "WorkflowVersion"]
