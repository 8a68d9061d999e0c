"""Reopening failed work: `spane dlq replay` and `spane retry`.

The only way a terminal state changes (SPEC §3.5): failed nodes go back on a queue with a fresh
retry budget, their `upstream_failed` descendants become pending again, the execution is
running again with a fresh deadline, and all of it is recorded as events in one transaction.

Sub-workflows reopen as a whole chain. A failed `workflow` node whose child execution failed
is not run again (that would start a new child and repeat the side effects the first one
already had): its child is reopened instead. And a child execution that is reopened wakes
the node of its parent that failed with it, up the chain. Every execution of the chain is
locked first, deepest first (the lock order of tx.py), before anything changes.
"""

from __future__ import annotations

from collections.abc import Iterable

from spane_cli.errors import NotFound, OperationFailed
from spane_cli.states import TERMINAL_NODE, ExecutionStatus, NodeStatus
from spane_cli.store import events, repair
from spane_cli.store.models import DeadLetter, Event, Execution, NodeRun
from spane_cli.store.records import Dispatch, dispatch_of
from spane_cli.store.tx import Caches, Tx, transaction
from spane_cli.workflow.dag import descendants

_REOPENABLE = (ExecutionStatus.FAILED, ExecutionStatus.RUNNING, ExecutionStatus.PAUSED)


def _failed_nodes(execution_id: str) -> list[NodeRun]:
    return list(
        NodeRun.select().where(
            (NodeRun.execution == execution_id) & (NodeRun.status == NodeStatus.FAILED)
        )
    )


def _chain_of(execution_id: str) -> set[str]:
    """The execution, its ancestors, and the failed children below its failed nodes."""
    chain = {execution_id}
    row = Execution.get_or_none(Execution.id == execution_id)
    while row is not None and row.parent_id:
        chain.add(str(row.parent_id))
        row = Execution.get_or_none(Execution.id == row.parent_id)
    below = [execution_id]
    while below:
        current = below.pop()
        for node in _failed_nodes(current):
            child = node.child_execution_id
            if child and child not in chain:
                chain.add(str(child))
                below.append(str(child))
    return chain


def _still_there(execution_id: str) -> Execution:
    """The execution read again under its lock: `spane gc` may have deleted it meanwhile."""
    execution = Execution.get_or_none(Execution.id == execution_id)
    if execution is None:
        raise NotFound(f"no execution {execution_id!r} (deleted meanwhile)")
    return execution


def _lock_chain(tx: Tx, execution_id: str) -> None:
    chain = _chain_of(execution_id)
    tx.caches.load_execution_infos(chain)
    tx.lock_executions(chain)


def _reset_upstream_failed(
    tx: Tx, execution_id: str, roots: Iterable[str], rows: dict[str, NodeRun]
) -> list[str]:
    """The upstream_failed descendants of `roots` back to pending, and the exit handlers that
    had ended (they run again once the main graph has ended again); the ones that moved."""
    workflow = tx.version(tx.info(execution_id).version_id).workflow  # type: ignore[union-attr]
    needs = {node_id: list(node.needs) for node_id, node in workflow.nodes.items()}
    roots = list(roots)
    reset = sorted(
        {
            child
            for root in roots
            for child in descendants(needs, root)
            if rows[child].status == NodeStatus.UPSTREAM_FAILED
            or (workflow.nodes[child].on_exit and rows[child].status in TERMINAL_NODE)
        }
    )
    back = set(roots) | set(reset)
    moved_nodes: list[str] = []
    for node_id in reset:
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
                & (NodeRun.status == rows[node_id].status)
            )
            .execute()
        )
        if moved == 1:
            moved_nodes.append(node_id)
    return moved_nodes


def _reopen_row(tx: Tx, execution: Execution, reopened: list[str]) -> None:
    """The execution running again, `reopened` nodes more to go, a deadline as long as its
    first (the old one may be long past)."""
    deadline = (
        tx.now + (execution.timeout_at - execution.created_at)
        if execution.timeout_at is not None
        else None
    )
    paused = Execution.get_by_id(execution.id).status == ExecutionStatus.PAUSED
    Execution.update(
        status=ExecutionStatus.PAUSED if paused else ExecutionStatus.RUNNING,
        finished_at=None,
        error=None,
        output=None,
        timeout_at=deadline,
        remaining_nodes=Execution.remaining_nodes + len(reopened),
    ).where(Execution.id == execution.id).execute()
    tx.deadlines[str(execution.id)] = deadline
    tx.event(str(execution.id), None, events.EXECUTION_RETRIED, {"nodes": sorted(reopened)})


def _wake_parent(tx: Tx, child: Execution) -> None:
    """The parent node that failed because `child` failed waits for it again."""
    if not (child.parent_id and child.parent_node_id):
        return
    parent = Execution.get_by_id(child.parent_id)
    node_id = str(child.parent_node_id)
    version = tx.version(parent.version_id)
    if parent.status not in _REOPENABLE or version.workflow.nodes[node_id].continue_on_fail:
        return  # the parent went on without it: it has nothing left to wake
    moved = (
        NodeRun.update(status=NodeStatus.WAITING, error=None, finished_at=None, due_at=None)
        .where(
            (NodeRun.execution == parent.id)
            & (NodeRun.node_id == node_id)
            & (NodeRun.status == NodeStatus.FAILED)
            & (NodeRun.child_execution_id == child.id)
        )
        .execute()
    )
    if moved != 1:
        return
    rows = {r.node_id: r for r in NodeRun.select().where(NodeRun.execution == parent.id)}
    reset = _reset_upstream_failed(tx, str(parent.id), [node_id], rows)
    _wait_again(tx, str(parent.id), rows, {node_id, *reset})
    tx.event(str(parent.id), node_id, events.NODE_WAITING, {"child_execution": str(child.id)})
    DeadLetter.update(replayed_at=tx.now).where(
        (DeadLetter.execution_id == parent.id)
        & (DeadLetter.node_id == node_id)
        & (DeadLetter.replayed_at.is_null())
    ).execute()
    _reopen_row(tx, parent, [node_id, *reset])
    _wake_parent(tx, parent)


def _reopen(tx: Tx, execution_id: str, failed_nodes: Iterable[str]) -> list[Dispatch]:
    """Inside a transaction that holds the chain's locks: reopen `failed_nodes` and their
    upstream_failed descendants; returns the jobs to enqueue (children's included)."""
    execution = Execution.get_by_id(execution_id)
    workflow = tx.version(execution.version_id).workflow
    rows = {r.node_id: r for r in NodeRun.select().where(NodeRun.execution == execution_id)}
    targets = [n for n in failed_nodes if rows[n].status == NodeStatus.FAILED]
    main_targets = [n for n in targets if not workflow.nodes[n].on_exit]
    if main_targets:
        # Failed exit handlers wait for the main graph again (reset below), not queued now.
        targets = main_targets
    dispatches: list[Dispatch] = []
    through_child = [
        n
        for n in targets
        if rows[n].child_execution_id
        and Execution.get_by_id(rows[n].child_execution_id).status == ExecutionStatus.FAILED
    ]
    for node_id in through_child:
        child_id = str(rows[node_id].child_execution_id)
        child_failed = [row.node_id for row in _failed_nodes(child_id)]
        dispatches += _reopen(tx, child_id, child_failed)  # wakes this node when it reopens
        _mark_letters_replayed(tx, child_id, child_failed)
    # Every count below comes from the rows a guarded UPDATE moved, not from what was read:
    # a node another caller reopened meanwhile is neither queued nor counted twice.
    reopened: list[str] = []
    for node_id in (n for n in targets if n not in through_child):
        attempt = rows[node_id].attempt + 1
        moved = (
            NodeRun.update(
                status=NodeStatus.QUEUED,
                attempt=attempt,
                attempt_offset=rows[node_id].attempt,
                lost_count=0,
                error=None,
                output=None,
                queued_at=tx.now,
                started_at=None,
                finished_at=None,
                due_at=None,
                child_execution_id=None,
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
        dispatches.append(dispatch_of(execution_id, workflow.nodes[node_id], attempt))
        tx.event(execution_id, node_id, events.NODE_QUEUED, {"attempt": attempt})
    if not reopened:
        return dispatches
    reopened += _reset_upstream_failed(tx, execution_id, list(reopened), rows)
    stopped = (
        _stopped_by_fail_fast(tx, execution_id, rows, set(reopened)) if workflow.fail_fast else []
    )
    _wait_again(tx, execution_id, rows, {*reopened, *stopped})
    tx.enqueue([d for d in dispatches if d.execution_id == execution_id])
    _reopen_row(tx, execution, reopened + stopped)
    if stopped:
        already = len(tx.dispatches)
        _decide_stopped(tx, execution_id)
        dispatches += tx.dispatches[already:]
    _wake_parent(tx, execution)
    return dispatches


def _wait_again(tx: Tx, execution_id: str, rows: dict[str, NodeRun], back: set[str]) -> None:
    """Nodes still pending had counted the parents in `back` as ended (an exit handler
    waiting for a node still running, say): they wait for them again, so a replay during a
    run cannot let them start before those parents end a second time."""
    workflow = tx.version(tx.info(execution_id).version_id).workflow  # type: ignore[union-attr]
    for node_id, node in workflow.nodes.items():
        if node_id in back or rows[node_id].status != NodeStatus.PENDING:
            continue
        again = sum(1 for parent in node.needs if parent in back)
        if again:
            tx.run(
                "UPDATE node_run SET waiting_on = waiting_on + ? WHERE execution_id = ?"
                " AND node_id = ? AND status = 'pending'",
                (again, execution_id, node_id),
            )


def _stopped_by_fail_fast(
    tx: Tx, execution_id: str, rows: dict[str, NodeRun], back: set[str]
) -> list[str]:
    """The nodes fail_fast skipped back to pending (a retry starts them after all), each
    waiting for its parents that are not terminal any more; the ones that moved."""
    workflow = tx.version(tx.info(execution_id).version_id).workflow  # type: ignore[union-attr]
    skips = Event.select(Event.node_id, Event.data).where(
        (Event.execution_id == execution_id) & (Event.type == events.NODE_SKIPPED)
    )
    candidates = sorted(
        {
            str(event.node_id)
            for event in skips
            if isinstance(event.data, dict) and event.data.get("reason") == "fail_fast"
        }
    )
    stopped = [n for n in candidates if rows[n].status == NodeStatus.SKIPPED and n not in back]
    open_now = back | set(stopped)
    moved_nodes: list[str] = []
    for node_id in stopped:
        moved = (
            NodeRun.update(
                status=NodeStatus.PENDING,
                waiting_on=sum(1 for p in workflow.nodes[node_id].needs if p in open_now),
                finished_at=None,
            )
            .where(
                (NodeRun.execution == execution_id)
                & (NodeRun.node_id == node_id)
                & (NodeRun.status == NodeStatus.SKIPPED)
            )
            .execute()
        )
        if moved == 1:
            moved_nodes.append(node_id)
    return moved_nodes


def _decide_stopped(tx: Tx, execution_id: str) -> None:
    """Nodes back to pending whose parents have all ended are decided now, by the scheduler's
    plan of the snapshot, applied as a repair applies it (the others wait for their parents)."""
    repair.apply_plan(tx, execution_id)


def _mark_letters_replayed(tx: Tx, execution_id: str, node_ids: list[str]) -> None:
    DeadLetter.update(replayed_at=tx.now).where(
        (DeadLetter.execution_id == execution_id)
        & (DeadLetter.node_id.in_(node_ids))
        & (DeadLetter.replayed_at.is_null())
    ).execute()


def replay_dead_letter(caches: Caches, letter_id: int, now: float | None = None) -> list[Dispatch]:
    """Reopen the node of one dead letter; refused when it was replayed before."""
    with transaction(caches, now) as tx:
        letter = DeadLetter.get_or_none(DeadLetter.id == letter_id)
        if letter is None:
            raise NotFound(f"no dead letter {letter_id}")
        if letter.replayed_at is not None:
            raise OperationFailed(f"dead letter {letter_id} was already replayed")
        execution = Execution.get_or_none(Execution.id == letter.execution_id)
        if execution is None:
            raise NotFound(f"execution {letter.execution_id} of dead letter {letter_id} is gone")
        _lock_chain(tx, str(execution.id))
        execution = _still_there(str(execution.id))
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
        if Execution.get_or_none(Execution.id == execution_id) is None:
            raise NotFound(f"no execution {execution_id!r}")
        # Locked before reading its status: of two concurrent retries, the second one sees
        # the execution running again and is refused.
        _lock_chain(tx, execution_id)
        execution = _still_there(execution_id)
        if execution.status != ExecutionStatus.FAILED:
            raise OperationFailed(
                f"execution {execution_id} is {execution.status}; only failed ones can be retried"
            )
        failed = [row.node_id for row in _failed_nodes(execution_id)]
        dispatches = _reopen(tx, execution_id, failed)
        if not dispatches:
            raise OperationFailed(f"execution {execution_id} has no failed node to retry")
        _mark_letters_replayed(tx, execution_id, failed)
    return dispatches


def purge_dead_letters(letter_ids: list[int] | None) -> int:
    query = DeadLetter.delete()
    if letter_ids is not None:
        query = query.where(DeadLetter.id.in_(letter_ids))
    return int(query.execute())
