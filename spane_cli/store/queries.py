"""The read side: what the CLI and the engine look up, as functions over the models, so no
caller above the store builds a query of its own. Nothing here writes."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from peewee import ModelSelect, fn

from spane_cli.errors import NotFound, UsageError
from spane_cli.states import ACTIVE_EXECUTION, OPEN_EXECUTION, TERMINAL_EXECUTION, NodeStatus
from spane_cli.store import sql
from spane_cli.store.models import (
    DeadLetter,
    Event,
    Execution,
    NodeItem,
    NodeLog,
    NodeRun,
    Outbox,
    WorkflowVersion,
)
from spane_cli.store.records import Dispatch


def require_execution(execution_id: str) -> Execution:
    execution = Execution.get_or_none(Execution.id == execution_id)
    if execution is None:
        raise NotFound(f"no execution {execution_id!r}")
    return execution


MIN_ID_PREFIX = 4
_SHOWN_CANDIDATES = 10


def resolve_execution_id(text: str) -> str:
    """The full id of the execution `text` names: the id itself, or a unique prefix of at
    least MIN_ID_PREFIX characters. An ambiguous prefix is a usage error that lists the
    candidates; no match is NotFound."""
    if Execution.select(Execution.id).where(Execution.id == text).exists():
        return text
    if len(text) < MIN_ID_PREFIX or not all(c.isalnum() or c == "-" for c in text):
        raise NotFound(f"no execution {text!r}")
    found = [
        str(row.id)
        for row in Execution.select(Execution.id)
        .where(Execution.id.startswith(text))
        .order_by(Execution.id)
        .limit(_SHOWN_CANDIDATES + 1)
    ]
    if not found:
        raise NotFound(f"no execution {text!r}")
    if len(found) > 1:
        shown = ", ".join(found[:_SHOWN_CANDIDATES])
        more = ", ..." if len(found) > _SHOWN_CANDIDATES else ""
        raise UsageError(f"{text!r} is the start of several executions: {shown}{more}")
    return found[0]


def execution_ids_starting(prefix: str, limit: int) -> list[str]:
    """Ids of the newest executions that start with `prefix` (shell completion)."""
    rows = (
        Execution.select(Execution.id)
        .where(Execution.id.startswith(prefix))
        .order_by(Execution.created_at.desc())
        .limit(limit)
    )
    return [str(row.id) for row in rows]


def workflow_names() -> list[str]:
    """Every workflow name that has a registered version, sorted."""
    rows = WorkflowVersion.select(WorkflowVersion.name).distinct().order_by(WorkflowVersion.name)
    return [str(row.name) for row in rows]


def execution_status(execution_id: str) -> str | None:
    """The execution's status now, or None when there is no such execution."""
    row = Execution.select(Execution.status).where(Execution.id == execution_id).first()
    return None if row is None else str(row.status)


def node_state(execution_id: str, node_id: str) -> dict[str, object] | None:
    """`{status, output, error}` of one node, as templates see `nodes.<id>`."""
    row = (
        NodeRun.select(NodeRun.status, NodeRun.output, NodeRun.error)
        .where((NodeRun.execution == execution_id) & (NodeRun.node_id == node_id))
        .first()
    )
    if row is None:
        return None
    return {"status": row.status, "output": row.output, "error": row.error}


def node_outcomes(execution_id: str) -> list[tuple[str, str, str | None, int, float | None]]:
    """`(node_id, status, error, attempt, finished_at)` of every node of an execution, for
    `workflow.status` and `workflow.failures` in templates."""
    rows = NodeRun.select(
        NodeRun.node_id, NodeRun.status, NodeRun.error, NodeRun.attempt, NodeRun.finished_at
    ).where(NodeRun.execution == execution_id)
    return [
        (row.node_id, row.status, row.error, int(row.attempt or 0), row.finished_at) for row in rows
    ]


def pending_dispatches(older_than: float, limit: int = 1000) -> list[Dispatch]:
    """Outbox rows older than `older_than` (epoch): dispatch intent not yet claimed. Rows keep
    no priority: `Caches.with_priorities` gives the ones to send again theirs."""
    rows = (
        Outbox.select()
        .join(Execution, on=(Outbox.execution_id == Execution.id))
        .where((Outbox.created_at <= older_than) & (Execution.status.in_(list(ACTIVE_EXECUTION))))
        .order_by(Outbox.id)
        .limit(limit)
    )
    return [Dispatch(r.execution_id, r.node_id, r.attempt, r.queue, r.item) for r in rows]


def work_left(queues: Sequence[str], due_before: float) -> bool:
    """Whether a node (or a foreach item) on `queues` of an active execution is queued, or
    is a retry or delay due before `due_before`."""
    nodes = (
        NodeRun.select()
        .join(Execution)
        .where(
            (Execution.status.in_(list(ACTIVE_EXECUTION)))
            & (NodeRun.queue.in_(list(queues)))
            & (
                (NodeRun.status == NodeStatus.QUEUED)
                | (
                    NodeRun.status.in_([NodeStatus.RETRYING, NodeStatus.WAITING])
                    & (NodeRun.due_at <= due_before)
                    & NodeRun.child_execution_id.is_null()
                )
            )
        )
    )
    if nodes.exists():
        return True
    found_items = (
        NodeItem.select()
        .join(
            NodeRun,
            on=(NodeRun.execution == NodeItem.execution_id) & (NodeRun.node_id == NodeItem.node_id),
        )
        .join(Execution)
        .where(
            (Execution.status.in_(list(ACTIVE_EXECUTION)))
            & (NodeRun.queue.in_(list(queues)))
            & (NodeRun.status == NodeStatus.WAITING)
            & (
                (NodeItem.status == NodeStatus.QUEUED)
                | (
                    NodeItem.status.in_([NodeStatus.RETRYING, NodeStatus.WAITING])
                    & (NodeItem.due_at <= due_before)
                    & NodeItem.child_execution_id.is_null()
                )
            )
        )
    )
    return bool(found_items.exists())


def next_due(after: float) -> float | None:
    """The earliest time after `after` at which a retry or a delay (of a node or a foreach
    item) is due, or an execution's deadline, or None. Rows past their time are left to the
    pass that is due now."""
    times = [
        table.select(fn.MIN(table.due_at))
        .where(
            (table.due_at > after)
            # queued with a due time: a start a rate limit or a breaker put off.
            & table.status.in_([NodeStatus.RETRYING, NodeStatus.WAITING, NodeStatus.QUEUED])
            & table.child_execution_id.is_null()
        )
        .scalar()
        for table in (NodeRun, NodeItem)
    ]
    times.append(
        Execution.select(fn.MIN(Execution.timeout_at))
        .where((Execution.timeout_at > after) & Execution.status.in_(list(OPEN_EXECUTION)))
        .scalar()
    )
    known = [float(t) for t in times if t is not None]
    return min(known) if known else None


# -- executions ------------------------------------------------------------------------------


def executions(execution_ids: Collection[str]) -> list[Execution]:
    return list(Execution.select().where(Execution.id.in_(list(execution_ids))))


def unfinished_count(execution_ids: Collection[str]) -> int:
    """How many of these executions have not reached a terminal status (absent ones count as
    finished: there is nothing left to wait for)."""
    return int(
        Execution.select()
        .where(
            Execution.id.in_(list(execution_ids))
            & Execution.status.not_in(list(TERMINAL_EXECUTION))
        )
        .count()
    )


def recent_executions(
    *,
    status: str | None = None,
    workflow: str | None = None,
    created_since: float | None = None,
    schedule: str | None = None,
    limit: int = 50,
) -> list[Execution]:
    """Newest first, at most `limit`; each filter applies when given. The executions of a
    schedule come newest fire time first."""
    query = Execution.select().order_by(Execution.created_at.desc()).limit(limit)
    if schedule:
        query = query.where(Execution.schedule == schedule).order_by(
            Execution.fire_time.desc(), Execution.created_at.desc()
        )
    if status:
        query = query.where(Execution.status == status)
    if workflow:
        query = query.where(Execution.workflow == workflow)
    if created_since is not None:
        query = query.where(Execution.created_at >= created_since)
    return list(query)


def open_executions() -> list[Execution]:
    """Executions that have not ended (paused ones included), oldest first."""
    query = Execution.select().where(Execution.status.in_(list(OPEN_EXECUTION)))
    return list(query.order_by(Execution.created_at))


# -- nodes -----------------------------------------------------------------------------------


def node_count(execution_ids: Collection[str]) -> int:
    return int(NodeRun.select().where(NodeRun.execution.in_(list(execution_ids))).count())


def queued_and_started_times(execution_ids: Collection[str]) -> list[tuple[float, float]]:
    """(queued_at, started_at) of every node of these executions that has started."""
    rows = NodeRun.select(NodeRun.queued_at, NodeRun.started_at).where(
        NodeRun.execution.in_(list(execution_ids))
        & NodeRun.queued_at.is_null(False)
        & NodeRun.started_at.is_null(False)
    )
    return [(float(row.queued_at or 0), float(row.started_at or 0)) for row in rows]


# -- events and logs -------------------------------------------------------------------------


def newest_event_id(execution_id: str) -> int:
    """The id of the execution's latest event, 0 when it has none: a cheap "did anything
    change" for views that redraw."""
    newest = (
        Event.select(Event.id)
        .where(Event.execution_id == execution_id)
        .order_by(Event.id.desc())
        .scalar()
    )
    return int(newest or 0)


def events_after(execution_id: str, after_id: int, limit: int = 1000) -> list[Event]:
    """The execution's events with an id above `after_id`, in order."""
    return list(
        Event.select()
        .where((Event.execution_id == execution_id) & (Event.id > after_id))
        .order_by(Event.id)
        .limit(limit)
    )


def logs_after(
    execution_id: str, after_id: int, node_id: str | None = None, limit: int = 500
) -> list[NodeLog]:
    """Captured output with an id above `after_id`, in order; one node's when `node_id`."""
    query = NodeLog.select().where((NodeLog.execution_id == execution_id) & (NodeLog.id > after_id))
    if node_id is not None:
        query = query.where(NodeLog.node_id == node_id)
    return list(query.order_by(NodeLog.id).limit(limit))


def item_value(execution_id: str, node_id: str, index: int) -> Any:
    """The value of one foreach item (`item` in its templates); None when there is none."""
    row = (
        NodeItem.select(NodeItem.value)
        .where(
            (NodeItem.execution_id == execution_id)
            & (NodeItem.node_id == node_id)
            & (NodeItem.item_index == index)
        )
        .first()
    )
    return None if row is None else row.value


def node_log_text(execution_id: str, node_id: str) -> str:
    """Everything one node printed, every attempt, as one text."""
    rows = (
        NodeLog.select(NodeLog.text)
        .where((NodeLog.execution_id == execution_id) & (NodeLog.node_id == node_id))
        .order_by(NodeLog.id)
    )
    return "".join(row.text for row in rows)


# -- dead letters ----------------------------------------------------------------------------


def require_dead_letter(letter_id: int) -> DeadLetter:
    letter = DeadLetter.get_or_none(DeadLetter.id == letter_id)
    if letter is None:
        raise NotFound(f"no dead letter {letter_id}")
    return letter


def _dead_letter_query(
    include_replayed: bool, workflow: str | None, created_since: float | None
) -> ModelSelect[DeadLetter]:
    """Dead letters newest first, filtered as `spane dlq list` and the API filter them."""
    query = DeadLetter.select().order_by(DeadLetter.id.desc())
    if not include_replayed:
        query = query.where(DeadLetter.replayed_at.is_null())
    if workflow:
        query = query.where(DeadLetter.workflow == workflow)
    if created_since is not None:
        query = query.where(DeadLetter.created_at >= created_since)
    return query


def dead_letters(
    *,
    include_replayed: bool = False,
    workflow: str | None = None,
    created_since: float | None = None,
) -> list[DeadLetter]:
    """Newest first; those not yet replayed unless `include_replayed`."""
    return list(_dead_letter_query(include_replayed, workflow, created_since))


def unreplayed_dead_letter_ids(workflow: str | None = None) -> list[int]:
    """Ids of the dead letters not yet replayed, oldest first; one workflow's when given."""
    query = DeadLetter.select(DeadLetter.id).where(DeadLetter.replayed_at.is_null())
    if workflow:
        query = query.where(DeadLetter.workflow == workflow)
    return [int(row.id) for row in query.order_by(DeadLetter.id)]


# -- pages (the HTTP API's cursor pagination) ------------------------------------------------


def execution_page(
    *,
    status: str | None = None,
    workflow: str | None = None,
    created_since: float | None = None,
    schedule: str | None = None,
    limit: int = 50,
    before: tuple[float, str] | None = None,
) -> list[Execution]:
    """Newest first by (created_at, id), at most `limit`, after the cursor `before` (the
    last row of the previous page): an execution created meanwhile never shifts a page."""
    query = Execution.select().order_by(Execution.created_at.desc(), Execution.id.desc())
    if status:
        query = query.where(Execution.status == status)
    if workflow:
        query = query.where(Execution.workflow == workflow)
    if schedule:
        query = query.where(Execution.schedule == schedule)
    if created_since is not None:
        query = query.where(Execution.created_at >= created_since)
    if before is not None:
        created, execution_id = before
        query = query.where(
            (Execution.created_at < created)
            | ((Execution.created_at == created) & (Execution.id < execution_id))
        )
    return list(query.limit(limit))


def dead_letter_page(
    *,
    include_replayed: bool = False,
    workflow: str | None = None,
    created_since: float | None = None,
    limit: int = 50,
    before: int | None = None,
) -> list[DeadLetter]:
    """`dead_letters` a page at a time: newest first, ids below `before`."""
    query = _dead_letter_query(include_replayed, workflow, created_since)
    if before is not None:
        query = query.where(DeadLetter.id < before)
    return list(query.limit(limit))


# -- registered workflows --------------------------------------------------------------------


def registered_workflows(
    limit: int = 50, after: str | None = None
) -> list[tuple[str, int, int, float]]:
    """(name, versions, newest number, newest registered at) by name, names after `after`."""
    newest = fn.MAX(WorkflowVersion.number)
    query = (
        WorkflowVersion.select(
            WorkflowVersion.name,
            fn.COUNT(WorkflowVersion.id).alias("versions"),
            newest.alias("newest"),
            fn.MAX(WorkflowVersion.created_at).alias("registered"),
        )
        .group_by(WorkflowVersion.name)
        .order_by(WorkflowVersion.name)
    )
    if after is not None:
        query = query.where(WorkflowVersion.name > after)
    rows: list[Any] = list(query.limit(limit).tuples())
    return [(str(row[0]), int(row[1]), int(row[2]), float(row[3])) for row in rows]


def workflow_versions(name: str) -> list[WorkflowVersion]:
    """The registered versions of workflow `name`, newest first; NotFound when none."""
    rows = list(
        WorkflowVersion.select()
        .where(WorkflowVersion.name == name)
        .order_by(WorkflowVersion.number.desc())
    )
    if not rows:
        raise NotFound(f"no registered workflow named {name!r}")
    return rows


def require_workflow_version(name: str, number: int | None = None) -> WorkflowVersion:
    """Version `number` of workflow `name` (its newest when None); NotFound otherwise."""
    query = WorkflowVersion.select().where(WorkflowVersion.name == name)
    if number is not None:
        query = query.where(WorkflowVersion.number == number)
    row = query.order_by(WorkflowVersion.number.desc()).first()
    if row is None:
        which = f"version {number} of workflow" if number is not None else "workflow"
        raise NotFound(f"no registered {which} {name!r}")
    return row


# -- following many executions at once ---------------------------------------------------------


@dataclass(frozen=True)
class FollowBatch:
    """One read for every followed execution: the rows after each one's cursor (in id order),
    and the status of each execution in the same snapshot. When `complete` is false the read
    was cut at its limit: rows past it, and the statuses of executions without a row in it,
    are for the next read."""

    rows: list[Any]
    statuses: dict[str, str]
    complete: bool


_FOLLOWED_COLUMNS = {
    "event": "e.id, e.node_id, e.type, e.data, e.created_at",
    "node_log": "e.id, e.node_id, e.attempt, e.text, e.created_at, e.item, e.worker",
}


def follow_batch(table: str, cursors: Mapping[str, int], limit: int = 1000) -> FollowBatch:
    """The `event` or `node_log` rows of several executions, each after its own cursor, with
    the executions' statuses: ONE statement, however many executions and followers, so that
    a server with many followers costs the database one query per look. One statement is
    also one snapshot, so an execution seen ended has no committed row left unread. The
    executions without a new row come first, so the limit never hides their status."""
    if not cursors:
        return FollowBatch([], {}, True)
    followed = list(cursors.items())
    # The first row casts, so PostgreSQL knows the cursor column is a number.
    values = ", ".join(["(?, CAST(? AS BIGINT))"] + ["(?, ?)"] * (len(followed) - 1))
    params: list[Any] = [value for pair in followed for value in pair]
    statement = (
        f"SELECT x.id, x.status, {_FOLLOWED_COLUMNS[table]}"
        f" FROM (VALUES {values}) AS c"
        " JOIN execution x ON x.id = c.column1"
        f" LEFT JOIN {table} e ON e.execution_id = c.column1 AND e.id > c.column2"
        " ORDER BY (e.id IS NOT NULL), e.id LIMIT ?"
    )
    params.append(limit)
    fetched = sql.run(Execution._meta.database, statement, params).fetchall()
    rows: list[Any] = []
    statuses: dict[str, str] = {}
    for record in fetched:
        execution_id, status = str(record[0]), str(record[1])
        statuses[execution_id] = status
        if record[2] is not None:
            rows.append(_followed_row(table, execution_id, record[2:]))
    return FollowBatch(rows, statuses, len(fetched) < limit)


def _followed_row(table: str, execution_id: str, values: Sequence[Any]) -> Any:
    if table == "event":
        row_id, node_id, event_type, data, created_at = values
        return Event(
            id=int(row_id),
            execution_id=execution_id,
            node_id=node_id,
            type=event_type,
            data=sql.loads(data),
            created_at=float(created_at),
        )
    row_id, node_id, attempt, text, created_at, item, worker = values
    return NodeLog(
        id=int(row_id),
        execution_id=execution_id,
        node_id=node_id,
        attempt=int(attempt),
        text=text,
        created_at=float(created_at),
        item=item,
        worker=worker,
    )
