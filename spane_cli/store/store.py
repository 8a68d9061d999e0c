"""Every state change of executions and nodes, each a guarded UPDATE in one transaction.

A guarded UPDATE names the statuses it may leave (`WHERE status IN (...)`) and the attempt it
is about, so a duplicate, late or stale job changes nothing. Each change writes its event, and
any dispatch intent (outbox row), in the same transaction; deciding which children become ready
happens in the transaction that finishes their parent.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import peewee

from spane_cli.engine import scheduler
from spane_cli.engine.states import ExecutionStatus, NodeStatus
from spane_cli.errors import NotFound, OperationFailed
from spane_cli.store import events, sql
from spane_cli.store.db import write_transaction
from spane_cli.store.models import (
    DeadLetter,
    Execution,
    NodeRun,
    Outbox,
    WorkflowVersion,
    database_proxy,
)
from spane_cli.store.versions import LoadedVersion, VersionCache

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
    item: int | None = None  # a foreach item's index; None for the node itself


@dataclass
class ClaimedNode:
    execution_id: str
    node_id: str
    attempt: int
    version: LoadedVersion
    workflow_input: Any
    parent_outputs: dict[str, Any]
    timeout_at: float | None
    item: int | None = None  # a foreach item's index, when this claim is for one item
    item_value: Any = None


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


EventRow = tuple[str, str | None, str, dict[str, Any] | None]


@dataclass(frozen=True)
class ExecutionInfo:
    """The fields of an execution that never change after it is created."""

    id: str
    version_id: int
    workflow: str
    input: Any
    timeout_at: float | None
    depth: int
    parent_id: str | None
    parent_node_id: str | None


@dataclass
class _Batch:
    """What one transaction decided: jobs to enqueue once it commits, events to write before."""

    dispatches: list[Dispatch] = field(default_factory=list)
    events: list[EventRow] = field(default_factory=list)
    claim_for: tuple[str, frozenset[str]] | None = None  # (worker, its queues)
    next_claim: ClaimedNode | None = None


# A new execution's node rows; the last four always start at 0.
_NODE_ROW_COLUMNS = (
    "execution_id",
    "node_id",
    "status",
    "attempt",
    "waiting_on",
    "queue",
    "queued_at",
    "attempt_offset",
    "lost_count",
    "items_done",
    "items_failed",
)


class Store:
    def __init__(self, database: peewee.Database) -> None:
        self.database = database
        database_proxy.initialize(database)
        self.versions = VersionCache()
        self._infos: dict[str, ExecutionInfo] = {}
        self._seen_running: set[str] = set()

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
        if idempotency_key:
            existing = Execution.get_or_none(Execution.idempotency_key == idempotency_key)
            if existing is not None:
                return existing.id, False, []
        # The definition is loaded first, like the file was parsed before: created_at is the
        # moment the execution's rows are written, so its timings measure the run alone.
        self.versions.get(version_id)
        now = time.time() if now is None else now
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
        node_rows: list[tuple[Any, ...]] = []
        event_rows: list[tuple[str, str | None, str, dict[str, Any] | None]] = [
            (execution_id, None, events.EXECUTION_CREATED, {"workflow": workflow.name})
        ]
        for node in workflow.nodes.values():
            entry = not node.needs
            node_rows.append(
                (
                    execution_id,
                    node.id,
                    str(NodeStatus.QUEUED if entry else NodeStatus.PENDING),
                    1 if entry else 0,
                    len(node.needs),
                    node.queue,
                    now if entry else None,
                )
            )
            if entry:
                event_rows.append((execution_id, node.id, events.NODE_QUEUED, {"attempt": 1}))
                batch.dispatches.append(Dispatch(execution_id, node.id, 1, node.queue))
        sql.insert_rows(
            self.database,
            "node_run",
            _NODE_ROW_COLUMNS,
            [(*row, 0, 0, 0, 0) for row in node_rows],
        )
        self._write_outbox(batch.dispatches[-len(workflow.entry_nodes) :], now)
        sql.insert_events(self.database, event_rows, now)
        return execution_id

    def _write_outbox(self, dispatches: Sequence[Dispatch], now: float) -> None:
        sql.insert_rows(
            self.database,
            "outbox",
            ("execution_id", "node_id", "attempt", "queue", "item", "created_at"),
            [(d.execution_id, d.node_id, d.attempt, d.queue, d.item, now) for d in dispatches],
        )

    # -- claiming ----------------------------------------------------------------------------

    _INFO_COLUMNS = "id, version_id, workflow, input, timeout_at, depth, parent_id, parent_node_id"

    def execution_info(self, execution_id: str) -> ExecutionInfo | None:
        """The fields of an execution that never change, cached: workers read them per node."""
        info = self._infos.get(execution_id)
        if info is not None:
            return info
        self.load_execution_infos([execution_id])
        return self._infos.get(execution_id)

    def knows_execution(self, execution_id: str) -> bool:
        """Whether the fixed fields of this execution are cached (reading them costs a query)."""
        return execution_id in self._infos

    def load_execution_infos(self, execution_ids: Iterable[str]) -> None:
        """Cache the fixed fields of several executions with one query (a worker taking a
        batch of jobs from different executions would otherwise commit once per execution)."""
        wanted = sorted({e for e in execution_ids if e not in self._infos})
        if not wanted:
            return
        rows = sql.run(
            self.database,
            f"SELECT {self._INFO_COLUMNS} FROM execution"
            f" WHERE id IN ({sql.placeholders(len(wanted))})",
            wanted,
        ).fetchall()
        for row in rows:
            self._infos[row[0]] = ExecutionInfo(
                id=row[0],
                version_id=int(row[1]),
                workflow=row[2],
                input=sql.loads(row[3]),
                timeout_at=row[4],
                depth=int(row[5]),
                parent_id=row[6],
                parent_node_id=row[7],
            )
        while len(self._infos) > 4096:
            self._infos.pop(next(iter(self._infos)))

    def claim_node(
        self, execution_id: str, node_id: str, attempt: int, worker: str, now: float | None = None
    ) -> ClaimedNode | None:
        """queued -> running for exactly this attempt, or None when the job is stale."""
        claims = self.claim_nodes([(execution_id, node_id, attempt)], worker, now)
        return claims[0] if claims else None

    def claim_nodes(
        self, wanted: Sequence[tuple[str, str, int]], worker: str, now: float | None = None
    ) -> list[ClaimedNode]:
        """Several (execution, node, attempt) claims in one transaction, each guarded on its
        own; the stale ones are left out. Workers claim a few instant nodes at once this way,
        with a handful of statements per execution rather than four per node."""
        now = time.time() if now is None else now
        by_execution: dict[str, list[tuple[str, int]]] = {}
        for execution_id, node_id, attempt in wanted:
            by_execution.setdefault(execution_id, []).append((node_id, attempt))
        claimed: dict[tuple[str, str], ClaimedNode] = {}
        # A new execution's fixed fields are read inside the claim's transaction: one commit
        # fewer per execution, which small workflows notice.
        with write_transaction(self.database):
            self.load_execution_infos(by_execution)
            for execution_id, nodes in by_execution.items():
                info = self._infos.get(execution_id)
                if info is None:
                    continue
                version = self.versions.get(info.version_id)
                for claim in self._claim_in_transaction(info, version, nodes, worker, now):
                    claimed[(claim.execution_id, claim.node_id)] = claim
        # Only once committed (not when this was a savepoint in a caller's transaction): the
        # execution is running from now on, for this worker too.
        if self.database.transaction_depth() == 0:
            if len(self._seen_running) > 10000:
                self._seen_running.clear()  # only an optimization; forgetting is safe
            self._seen_running.update(e for e, _ in claimed)
        # In the order asked for; a job taken twice yields its claim once.
        return [claimed.pop((e, n)) for e, n, _ in wanted if (e, n) in claimed]

    def _claim_in_transaction(
        self,
        info: ExecutionInfo,
        version: LoadedVersion,
        nodes: Sequence[tuple[str, int]],
        worker: str,
        now: float,
    ) -> list[ClaimedNode]:
        execution_id = info.id
        by_attempt: dict[int, list[str]] = {}
        for node_id, attempt in nodes:
            by_attempt.setdefault(attempt, []).append(node_id)
        taken: list[tuple[str, int]] = []
        for attempt, node_ids in by_attempt.items():
            # Paused or ended executions are not claimed: the node stays queued with its
            # outbox row until resume (or was cancelled with the execution).
            rows = sql.run(
                self.database,
                "UPDATE node_run SET status = 'running', started_at = ?, worker = ?"
                " WHERE execution_id = ? AND attempt = ? AND status = 'queued'"
                f" AND node_id IN ({sql.placeholders(len(node_ids))})"
                " AND EXISTS (SELECT 1 FROM execution WHERE id = ?"
                " AND status IN ('pending', 'running')) RETURNING node_id",
                (now, worker, execution_id, attempt, *node_ids, execution_id),
            ).fetchall()
            taken += [(row[0], attempt) for row in rows]
        if not taken:
            return []
        sql.run(
            self.database,
            "DELETE FROM outbox WHERE execution_id = ? AND item IS NULL"
            f" AND node_id IN ({sql.placeholders(len(taken))})",
            (execution_id, *(node_id for node_id, _ in taken)),
        )
        event_rows: list[EventRow] = []
        if execution_id not in self._seen_running:
            started = sql.run(
                self.database,
                "UPDATE execution SET status = 'running', started_at = ?"
                " WHERE id = ? AND status = 'pending'",
                (now, execution_id),
            ).rowcount
            if started:
                event_rows.append((execution_id, None, events.EXECUTION_STARTED, None))
        attempts = {attempt: {"attempt": attempt} for attempt in by_attempt}  # encoded once
        event_rows += [(execution_id, n, events.NODE_STARTED, attempts[a]) for n, a in taken]
        sql.insert_events(self.database, event_rows, now)
        nodes_by_id = version.workflow.nodes
        needed = sorted({p for node_id, _ in taken for p in nodes_by_id[node_id].needs})
        outputs = self._parent_outputs(execution_id, needed) if needed else {}
        return [
            ClaimedNode(
                execution_id=execution_id,
                node_id=node_id,
                attempt=attempt,
                version=version,
                workflow_input=info.input,
                parent_outputs={p: outputs[p] for p in nodes_by_id[node_id].needs if p in outputs},
                timeout_at=info.timeout_at,
            )
            for node_id, attempt in taken
        ]

    def _parent_outputs(
        self, execution_id: str, needs: Sequence[str], known: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Outputs of the parents; a failed (continue_on_fail) or skipped parent hands on null."""
        outputs = {p: known[p] for p in needs if known and p in known}
        missing = [p for p in needs if p not in outputs]
        for member, values in sql.member_of(self.database, missing):
            rows = sql.run(
                self.database,
                "SELECT node_id, status, output FROM node_run WHERE execution_id = ?"
                f" AND node_id {member}",
                (execution_id, *values),
            ).fetchall()
            for parent, status, output in rows:
                outputs[parent] = sql.loads(output) if status == NodeStatus.SUCCEEDED else None
        return outputs

    # -- completing --------------------------------------------------------------------------

    def complete_node(
        self, claim: ClaimedNode, outcome: Outcome, now: float | None = None
    ) -> list[Dispatch]:
        """Record what the worker reports; returns the jobs to enqueue. Stale reports are no-ops."""
        dispatches, _ = self.complete_and_claim_next(claim, outcome, now=now)
        return dispatches

    def complete_and_claim_next(
        self,
        claim: ClaimedNode,
        outcome: Outcome,
        *,
        worker: str | None = None,
        queues: Sequence[str] = (),
        now: float | None = None,
    ) -> tuple[list[Dispatch], ClaimedNode | None]:
        """Record the outcome; when `worker` is given, claim one child it made ready (on one of
        `queues`) in the same transaction, so a chain costs one transaction and no Redis round
        trip per node. Returns the jobs to enqueue for the others, and that claim."""
        return self.complete_nodes([(claim, outcome)], worker=worker, queues=queues, now=now)

    def complete_nodes(
        self,
        reports: Sequence[tuple[ClaimedNode, Outcome]],
        *,
        worker: str | None = None,
        queues: Sequence[str] = (),
        now: float | None = None,
    ) -> tuple[list[Dispatch], ClaimedNode | None]:
        """Several outcomes in one transaction, each guarded on its own. Successes are counted
        down together: a join waiting on eight of them is updated once, and so is the
        execution's counter of remaining nodes."""
        now = time.time() if now is None else now
        batch = _Batch(claim_for=(worker, frozenset(queues)) if worker else None)
        succeeded: dict[str, dict[str, tuple[str, list[str] | None]]] = {}
        outputs: dict[str, dict[str, Any]] = {}
        try:
            with write_transaction(self.database):
                # Successes first, one UPDATE per execution and like output (every no-op
                # reports the same), then the rest one by one.
                alike: dict[tuple[str, int, str | None, str | None], list[ClaimedNode]] = {}
                for claim, outcome in reports:
                    if outcome.status == "succeeded":
                        self._store_logs(
                            claim.execution_id, claim.node_id, claim.attempt, outcome, now
                        )
                        key = (
                            claim.execution_id,
                            claim.attempt,
                            sql.dumps(outcome.output),
                            sql.dumps(outcome.chosen),
                        )
                        alike.setdefault(key, []).append(claim)
                stored: set[tuple[str, str]] = set()
                for (execution_id, attempt, output, chosen), claims in alike.items():
                    node_ids = [c.node_id for c in claims]
                    done = self._store_successes(
                        execution_id, node_ids, attempt, NodeStatus.RUNNING, output, chosen, now,
                        batch,
                    )  # fmt: skip
                    stored.update((execution_id, node_id) for node_id in done)
                for claim, outcome in reports:
                    if outcome.status != "succeeded":
                        self._record(
                            claim.execution_id, claim.node_id, claim.attempt,
                            NodeStatus.RUNNING, outcome, now, batch,
                        )  # fmt: skip
                    elif (claim.execution_id, claim.node_id) in stored:
                        finished = succeeded.setdefault(claim.execution_id, {})
                        finished[claim.node_id] = (NodeStatus.SUCCEEDED, outcome.chosen)
                        outputs.setdefault(claim.execution_id, {})[claim.node_id] = outcome.output
                for execution_id, finished in succeeded.items():
                    info = self.execution_info(execution_id)
                    if info is not None:
                        version = self.versions.get(info.version_id)
                        self._after_terminal(
                            info, version, finished, now, batch, outputs[execution_id]
                        )
        except _StaleReport:
            return [], None
        return batch.dispatches, batch.next_claim

    def _store_success(
        self,
        execution_id: str,
        node_id: str,
        attempt: int,
        from_status: NodeStatus,
        outcome: Outcome,
        now: float,
        batch: _Batch,
    ) -> bool:
        """The guarded `-> succeeded` update and its event; children are decided by the caller."""
        self._store_logs(execution_id, node_id, attempt, outcome, now)
        output, chosen = sql.dumps(outcome.output), sql.dumps(outcome.chosen)
        return bool(
            self._store_successes(
                execution_id, [node_id], attempt, from_status, output, chosen, now, batch
            )
        )

    def _store_successes(
        self,
        execution_id: str,
        node_ids: Sequence[str],
        attempt: int,
        from_status: NodeStatus,
        output: str | None,
        chosen: str | None,
        now: float,
        batch: _Batch,
    ) -> list[str]:
        """Guarded `-> succeeded` updates of nodes that report the same (encoded) output, and
        their events; returns the nodes that changed. Children are decided by the caller."""
        rows = sql.run(
            self.database,
            "UPDATE node_run SET status = 'succeeded', output = ?, error = NULL, chosen = ?,"
            " finished_at = ?, lost_count = 0, due_at = NULL"
            " WHERE execution_id = ? AND attempt = ? AND status = ?"
            f" AND node_id IN ({sql.placeholders(len(node_ids))}) RETURNING node_id",
            (output, chosen, now, execution_id, attempt, str(from_status), *node_ids),
        ).fetchall()
        changed = {row[0] for row in rows}
        done = [node_id for node_id in dict.fromkeys(node_ids) if node_id in changed]
        data = {"attempt": attempt}  # one dict for the batch: encoded once
        batch.events.extend((execution_id, n, events.NODE_SUCCEEDED, data) for n in done)
        return done

    def _store_logs(
        self, execution_id: str, node_id: str, attempt: int, outcome: Outcome, now: float
    ) -> None:
        if outcome.logs:
            sql.run(
                self.database,
                "INSERT INTO node_log (execution_id, node_id, attempt, text, created_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (execution_id, node_id, attempt, outcome.logs, now),
            )

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
        info = self.execution_info(execution_id)
        if info is None:
            return False
        version = self.versions.get(info.version_id)
        node = version.workflow.nodes[node_id]
        guard = (
            (NodeRun.execution == execution_id)
            & (NodeRun.node_id == node_id)
            & (NodeRun.attempt == attempt)
            & (NodeRun.status == from_status)
        )
        if outcome.status == "succeeded":
            if not self._store_success(
                execution_id, node_id, attempt, from_status, outcome, now, batch
            ):
                return False
            self._after_terminal(
                info,
                version,
                {node_id: (NodeStatus.SUCCEEDED, outcome.chosen)},
                now,
                batch,
                {node_id: outcome.output},
            )
            return True
        self._store_logs(execution_id, node_id, attempt, outcome, now)
        if outcome.status == "skipped":
            changed = (
                NodeRun.update(status=NodeStatus.SKIPPED, finished_at=now, due_at=None)
                .where(guard)
                .execute()
            )
            if changed != 1:
                return False
            batch.events.append((execution_id, node_id, events.NODE_SKIPPED, {"reason": "when"}))
            self._after_terminal(info, version, {node_id: (NodeStatus.SKIPPED, None)}, now, batch)
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
            return self._start_child(info, version, node_id, attempt, guard, outcome, now, batch)
        if outcome.status == "fanout":
            from spane_cli.store.items import start_items

            return start_items(self, info, version, node_id, attempt, outcome.output, now, batch)
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
        batch.events.append(
            (
                execution_id,
                node_id,
                events.NODE_FAILED,
                {"attempt": attempt, "error": _first_line(outcome.error)},
            )
        )
        if not node.continue_on_fail:
            inputs = scheduler.node_input(
                version.workflow, node_id, info.input, self._outputs(execution_id, node.needs)
            )
            letter = DeadLetter.create(
                execution_id=execution_id,
                workflow=info.workflow,
                node_id=node_id,
                error=outcome.error or "failed",
                attempts=budget_used,
                input=inputs,
                created_at=now,
            )
            batch.events.append(
                (execution_id, node_id, events.DEAD_LETTER_ADDED, {"dead_letter": letter.id})
            )
        self._after_terminal(info, version, {node_id: (NodeStatus.FAILED, None)}, now, batch)
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
        info: ExecutionInfo,
        version: LoadedVersion,
        finished: dict[str, tuple[str, list[str] | None]],
        now: float,
        batch: _Batch,
        finished_outputs: Mapping[str, Any] | None = None,
    ) -> None:
        """Children of newly terminal nodes: count down, decide, cascade skips; maybe finish.

        `finished` maps each newly terminal node to (status, branch choice)."""
        workflow = version.workflow
        execution_id = info.id
        known: dict[str, tuple[str, list[str] | None]] = dict(finished)
        terminal_count = 0
        frontier = list(finished)
        ready_all: list[str] = []
        while frontier:
            terminal_count += len(frontier)
            counts: dict[str, int] = {}
            for node_id in frontier:
                for child in version.children[node_id]:
                    counts[child] = counts.get(child, 0) + 1
            frontier = []
            if not counts:
                break
            # A child whose parents all became terminal in this transaction (every child of a
            # fan-out root, every link of a chain) is decided here without a countdown: its
            # row leaves 'pending' below with waiting_on = 0, one UPDATE instead of two.
            unblocked = sorted(c for c, n in counts.items() if n == len(workflow.nodes[c].needs))
            counted = {c: n for c, n in counts.items() if n != len(workflow.nodes[c].needs)}
            for decrement in sorted(set(counted.values())):
                group = sorted(c for c, n in counted.items() if n == decrement)
                for member, values in sql.member_of(self.database, group):
                    rows = sql.run(
                        self.database,
                        "UPDATE node_run SET waiting_on = waiting_on - ?"
                        f" WHERE execution_id = ? AND status = 'pending' AND node_id {member}"
                        " RETURNING node_id, waiting_on",
                        (decrement, execution_id, *values),
                    ).fetchall()
                    unblocked += [row[0] for row in rows if row[1] <= 0]
            if not unblocked:
                continue
            lookup = sorted({p for c in unblocked for p in workflow.nodes[c].needs} - set(known))
            for member, values in sql.member_of(self.database, lookup):
                for parent, status, chosen in sql.run(
                    self.database,
                    "SELECT node_id, status, chosen FROM node_run WHERE execution_id = ?"
                    f" AND node_id {member}",
                    (execution_id, *values),
                ).fetchall():
                    known[parent] = (status, sql.loads(chosen))
            decided: dict[NodeStatus, list[str]] = {
                NodeStatus.SKIPPED: [],
                NodeStatus.UPSTREAM_FAILED: [],
            }
            # Children with the same parents and trigger get the same decision unless a parent
            # is a branch (which chooses per child): a fan-out of 10,000 decides once.
            shared: dict[tuple[object, tuple[str, ...]], scheduler.Readiness] = {}
            for child in sorted(unblocked):
                node = workflow.nodes[child]
                key = (node.trigger, node.needs)
                decision = shared.get(key)
                if decision is None:
                    parent_views = {
                        p: scheduler.ParentView(
                            status=NodeStatus(known[p][0]),
                            continue_on_fail=workflow.nodes[p].continue_on_fail,
                            chose_child=_branch_choice(workflow.nodes[p].type, known[p], child),
                        )
                        for p in node.needs
                    }
                    decision = scheduler.child_readiness(node.trigger, parent_views)
                    if all(workflow.nodes[p].type != "branch" for p in node.needs):
                        shared[key] = decision
                if decision == scheduler.Readiness.READY:
                    ready_all.append(child)
                elif decision == scheduler.Readiness.SKIPPED:
                    decided[NodeStatus.SKIPPED].append(child)
                elif decision == scheduler.Readiness.UPSTREAM_FAILED:
                    decided[NodeStatus.UPSTREAM_FAILED].append(child)
            for status, node_ids in decided.items():
                if not node_ids:
                    continue
                changed: set[str] = set()
                for member, values in sql.member_of(self.database, node_ids):
                    changed.update(
                        row[0]
                        for row in sql.run(
                            self.database,
                            "UPDATE node_run SET status = ?, finished_at = ?, waiting_on = 0"
                            f" WHERE execution_id = ? AND status = 'pending' AND node_id {member}"
                            " RETURNING node_id",
                            (str(status), now, execution_id, *values),
                        ).fetchall()
                    )
                node_ids = [c for c in node_ids if c in changed]
                if not node_ids:
                    continue
                event_type = (
                    events.NODE_SKIPPED
                    if status == NodeStatus.SKIPPED
                    else events.NODE_UPSTREAM_FAILED
                )
                batch.events.extend((execution_id, c, event_type, None) for c in node_ids)
                for node_id in node_ids:
                    known[node_id] = (status, None)
                frontier.extend(node_ids)
        row = sql.run(
            self.database,
            "UPDATE execution SET remaining_nodes = remaining_nodes - ? WHERE id = ?"
            " RETURNING remaining_nodes, status",
            (terminal_count, execution_id),
        ).fetchone()
        remaining, execution_status = (int(row[0]), row[1]) if row else (1, None)
        if ready_all:
            self._mark_ready(
                info, version, ready_all, execution_status, now, batch, finished_outputs
            )
        sql.insert_events(self.database, batch.events, now)
        batch.events.clear()
        if remaining <= 0:
            self._finish_execution(execution_id, version, now, batch)

    def _mark_ready(
        self,
        info: ExecutionInfo,
        version: LoadedVersion,
        ready: list[str],
        execution_status: str | None,
        now: float,
        batch: _Batch,
        finished_outputs: Mapping[str, Any] | None,
    ) -> None:
        """pending -> queued with outbox rows; or, for the one child this worker takes at once,
        pending -> running with no job at all."""
        workflow = version.workflow
        execution_id = info.id
        direct: str | None = None
        if (
            batch.claim_for is not None
            and batch.next_claim is None
            and execution_status in ACTIVE_EXECUTION
        ):
            _, queues = batch.claim_for
            direct = next((c for c in ready if workflow.nodes[c].queue in queues), None)
        candidates = [c for c in ready if c != direct]
        changed: set[str] = set()
        for member, values in sql.member_of(self.database, candidates):
            changed.update(
                row[0]
                for row in sql.run(
                    self.database,
                    "UPDATE node_run SET status = 'queued', attempt = 1, queued_at = ?,"
                    " waiting_on = 0 WHERE execution_id = ? AND status = 'pending'"
                    f" AND node_id {member} RETURNING node_id",
                    (now, execution_id, *values),
                ).fetchall()
            )
        queued = [c for c in candidates if c in changed]
        dispatches = [Dispatch(execution_id, c, 1, workflow.nodes[c].queue) for c in queued]
        self._write_outbox(dispatches, now)
        batch.dispatches.extend(dispatches)
        first_attempt = {"attempt": 1}  # one dict for every row: encoded once
        batch.events.extend((execution_id, c, events.NODE_QUEUED, first_attempt) for c in queued)
        if direct is None or batch.claim_for is None:
            return
        taken = sql.run(
            self.database,
            "UPDATE node_run SET status = 'running', attempt = 1, queued_at = ?, started_at = ?,"
            " worker = ?, waiting_on = 0"
            " WHERE execution_id = ? AND node_id = ? AND status = 'pending'",
            (now, now, batch.claim_for[0], execution_id, direct),
        ).rowcount
        if taken != 1:
            return
        batch.events.append((execution_id, direct, events.NODE_QUEUED, {"attempt": 1}))
        batch.events.append((execution_id, direct, events.NODE_STARTED, {"attempt": 1}))
        batch.next_claim = ClaimedNode(
            execution_id=execution_id,
            node_id=direct,
            attempt=1,
            version=version,
            workflow_input=info.input,
            parent_outputs=self._parent_outputs(
                execution_id, workflow.nodes[direct].needs, finished_outputs
            ),
            timeout_at=info.timeout_at,
        )

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
            # Jinja2 is imported only when an execution finishes: read-only commands start faster.
            from spane_cli.workflow.expressions import ExpressionError

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
        events.emit(execution_id, event_type, now, **({"error": error} if error else {}))
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
        from spane_cli.workflow.expressions import render_value

        return render_value(workflow.output, scope)

    # -- sub-workflows -----------------------------------------------------------------------

    def _start_child(
        self,
        execution: ExecutionInfo,
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
        return [Dispatch(r.execution_id, r.node_id, r.attempt, r.queue, r.item) for r in rows]

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
            sql.run(
                self.database,
                "UPDATE node_item SET status = 'cancelled', finished_at = ? WHERE execution_id = ?"
                " AND status IN ('pending', 'queued', 'running', 'retrying')",
                (now, execution_id),
            )
            sql.insert_events(
                self.database,
                [(execution_id, n, events.NODE_CANCELLED, None) for n in open_nodes],
                now,
            )
            event_type = (
                events.EXECUTION_CANCELLED
                if status == ExecutionStatus.CANCELLED
                else events.EXECUTION_FAILED
            )
            events.emit(execution_id, event_type, now, **({"error": error} if error else {}))
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
            return [Dispatch(r.execution_id, r.node_id, r.attempt, r.queue, r.item) for r in rows]


class _StaleReport(Exception):
    """Raised inside a transaction to roll it back when a guarded update found nothing."""


_TERMINAL_NODE = (
    NodeStatus.SUCCEEDED,
    NodeStatus.FAILED,
    NodeStatus.SKIPPED,
    NodeStatus.CANCELLED,
    NodeStatus.UPSTREAM_FAILED,
)


def _branch_choice(
    parent_type: str, parent: tuple[str, list[str] | None], child: str
) -> bool | None:
    """Whether a branch parent chose `child`; None when the parent is not a branch. A branch
    that failed (and continued, with continue_on_fail) chose nothing, so its children skip."""
    if parent_type != "branch":
        return None
    status, chosen = parent
    if status == NodeStatus.SUCCEEDED:
        return child in (chosen or [])
    return False if status == NodeStatus.FAILED else None


def _first_line(text: str | None) -> str:
    return (text or "").strip().splitlines()[0] if (text or "").strip() else ""


__all__ = ["ClaimedNode", "Dispatch", "Outcome", "Store", "WorkflowVersion"]
