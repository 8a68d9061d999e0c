"""Completing: what a worker reports for its claim, recorded by a guarded UPDATE that names
the attempt and the status it leaves, so a stale or duplicate report changes nothing.

Success and `when:` skips cascade to the children (see cascade.py); a failure is retried while
the node's policy allows (now, or at `due_at` through the reconciler), else the node fails,
with a dead letter unless it continues on failure; `wait` parks a delay; `child` starts a
sub-workflow; `fanout` starts a foreach node's items.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from spane_cli import scheduler
from spane_cli.states import NodeStatus, OutcomeKind
from spane_cli.store import breakers, cascade, events, fail_fast, items, pools, sql, subworkflows
from spane_cli.store.models import DeadLetter, NodeRun
from spane_cli.store.records import ClaimedNode, ExecutionInfo, Report, dispatch_of
from spane_cli.store.tx import Tx
from spane_cli.store.versions import LoadedVersion
from spane_cli.text import first_line
from spane_cli.workflow.limits import BreakerSpec
from spane_cli.workflow.model import Node


def complete_nodes(tx: Tx, reports: Sequence[tuple[ClaimedNode, Report]]) -> None:
    """Several reports, each guarded on its own. Successes are counted down together: a join
    waiting on eight of them is updated once, and so is the execution's remaining count."""
    tx.lock_executions(claim.execution_id for claim, _ in reports)
    for claim, report in reports:
        spec = claim.version.workflow.nodes[claim.node_id].breaker
        if spec is not None and not report.refused and _still_running(tx, claim):
            _record_for_breaker(tx, spec, claim, report)
    # Successes first, one UPDATE per execution and like output (every no-op reports the
    # same), then the rest one by one.
    alike: dict[tuple[str, int, str | None, str | None, str | None], list[ClaimedNode]] = {}
    for claim, report in reports:
        if report.kind == OutcomeKind.SUCCEEDED:
            store_logs(tx, claim.execution_id, claim.node_id, claim.attempt, report, claim.worker)
            key = (
                claim.execution_id,
                claim.attempt,
                sql.dumps(report.output),
                sql.dumps(report.chosen),
                claim.worker,
            )
            alike.setdefault(key, []).append(claim)
    stored: set[tuple[str, str]] = set()
    for (execution_id, attempt, output, chosen, worker), claims in alike.items():
        node_ids = [c.node_id for c in claims]
        done = _store_successes(
            tx, execution_id, node_ids, attempt, NodeStatus.RUNNING, output, chosen, worker
        )
        stored.update((execution_id, node_id) for node_id in done)
    finished: dict[str, dict[str, scheduler.ParentState]] = {}
    outputs: dict[str, dict[str, Any]] = {}
    for claim, report in reports:
        if report.kind != OutcomeKind.SUCCEEDED:
            record(
                tx, claim.execution_id, claim.node_id, claim.attempt, NodeStatus.RUNNING, report,
                worker=claim.worker,
            )  # fmt: skip
        elif (claim.execution_id, claim.node_id) in stored:
            chosen_children = tuple(report.chosen) if report.chosen is not None else None
            finished.setdefault(claim.execution_id, {})[claim.node_id] = scheduler.ParentState(
                NodeStatus.SUCCEEDED, chosen_children
            )
            outputs.setdefault(claim.execution_id, {})[claim.node_id] = report.output
    for execution_id, ended in finished.items():
        info = tx.info(execution_id)
        if info is not None:
            version = tx.version(info.version_id)
            cascade.after_terminal(tx, info, version, ended, outputs[execution_id])
    report_ended_children(tx)


def complete_item(tx: Tx, claim: ClaimedNode, report: Report) -> None:
    """One foreach item's report; the node completes with its last item."""
    tx.lock_executions([claim.execution_id])
    spec = claim.version.workflow.nodes[claim.node_id].breaker
    if spec is not None and not report.refused and _still_running(tx, claim):
        _record_for_breaker(tx, spec, claim, report)
    node_report = items.record_item(tx, claim, report)
    if node_report is not None:
        record_items_report(tx, claim.execution_id, claim.node_id, node_report)
    report_ended_children(tx)


def _still_running(tx: Tx, claim: ClaimedNode) -> bool:
    """A breaker counts a report once: only while the claim is still the worker's."""
    if claim.item is None:
        row = tx.run(
            "SELECT 1 FROM node_run WHERE execution_id = ? AND node_id = ? AND attempt = ?"
            " AND status = 'running' AND worker = ?",
            (claim.execution_id, claim.node_id, claim.attempt, claim.worker),
        ).fetchone()
    else:
        row = tx.run(
            "SELECT 1 FROM node_item WHERE execution_id = ? AND node_id = ? AND item_index = ?"
            " AND attempt = ? AND status = 'running' AND worker = ?",
            (claim.execution_id, claim.node_id, claim.item, claim.attempt, claim.worker),
        ).fetchone()
    return row is not None


def _record_for_breaker(tx: Tx, spec: BreakerSpec, claim: ClaimedNode, report: Report) -> None:
    probe = breakers.probe_name(claim.execution_id, claim.node_id, claim.attempt, claim.item)
    breakers.record(tx, spec, claim.execution_id, claim.node_id, probe, report)


def record_items_report(
    tx: Tx, execution_id: str, node_id: str, node_report: items.NodeReport
) -> None:
    """A foreach node's own end, once its last item ended."""
    attempt, final = node_report
    # Items used the retry policy one by one; the node itself is not tried again.
    record(tx, execution_id, node_id, attempt, NodeStatus.WAITING, final, use_attempt=False)


def report_ended_children(tx: Tx) -> None:
    """Sub-workflows that ended in this transaction complete their parent nodes (or the
    foreach items that started them), which may end their own executions in turn (and so on
    up)."""
    while tx.ended_children:
        ended = tx.ended_children.pop(0)
        tx.lock_executions([ended.parent_id])
        parent = subworkflows.parent_report(ended)
        if parent is not None:
            attempt, report = parent
            record(tx, ended.parent_id, ended.parent_node_id, attempt, NodeStatus.WAITING, report)
            continue
        node_report = items.child_ended(tx, ended)
        if node_report is not None:
            record_items_report(tx, ended.parent_id, ended.parent_node_id, node_report)


def store_logs(
    tx: Tx,
    execution_id: str,
    node_id: str,
    attempt: int,
    report: Report,
    worker: str | None = None,
    item: int | None = None,
) -> None:
    """What the run printed and did not stream while it ran (see engine/live_logs.py)."""
    if report.logs:
        tx.run(
            "INSERT INTO node_log (execution_id, node_id, attempt, text, created_at, worker, item)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (execution_id, node_id, attempt, report.logs, tx.now, worker, item),
        )


def _store_successes(
    tx: Tx,
    execution_id: str,
    node_ids: Sequence[str],
    attempt: int,
    from_status: NodeStatus,
    output: str | None,
    chosen: str | None,
    worker: str | None = None,
) -> list[str]:
    """Guarded `-> succeeded` updates of nodes that report the same (encoded) output, and
    their events; returns the nodes that changed. Children are decided by the caller."""
    owner = " AND worker = ?" if worker is not None else ""
    rows = tx.run(
        "UPDATE node_run SET status = 'succeeded', output = ?, error = NULL, chosen = ?,"
        " finished_at = ?, lost_count = 0, due_at = NULL"
        f" WHERE execution_id = ? AND attempt = ? AND status = ?{owner}"
        f" AND node_id IN ({sql.placeholders(len(node_ids))}) RETURNING node_id",
        (
            output, chosen, tx.now, execution_id, attempt, str(from_status),
            *((worker,) if worker is not None else ()), *node_ids,
        ),
    ).fetchall()  # fmt: skip
    changed = {row[0] for row in rows}
    done = [node_id for node_id in dict.fromkeys(node_ids) if node_id in changed]
    data = {"attempt": attempt}  # one dict for the batch: encoded once
    for node_id in done:
        tx.event(execution_id, node_id, events.NODE_SUCCEEDED, data)
    if done and from_status == NodeStatus.RUNNING:
        _free_slots(tx, execution_id, done)
    return done


def _free_slots(tx: Tx, execution_id: str, node_ids: Sequence[str]) -> None:
    """Nodes that left `running` free their pool slots (nothing to do for nodes without a
    pool: that is read from the cached model)."""
    info = tx.info(execution_id)
    if info is not None:
        pools.release_nodes(tx, tx.version(info.version_id).workflow, execution_id, node_ids)


def record(
    tx: Tx,
    execution_id: str,
    node_id: str,
    attempt: int,
    from_status: NodeStatus,
    report: Report,
    use_attempt: bool = True,
    worker: str | None = None,
) -> bool:
    """Record one report for a node that is in `from_status` at `attempt` (and held by
    `worker`, when given); False when stale. A node that leaves `running` frees its slot."""
    recorded = _record(tx, execution_id, node_id, attempt, from_status, report, use_attempt,
                       worker)  # fmt: skip
    if recorded and from_status == NodeStatus.RUNNING:
        _free_slots(tx, execution_id, [node_id])
    return recorded


def _record(
    tx: Tx,
    execution_id: str,
    node_id: str,
    attempt: int,
    from_status: NodeStatus,
    report: Report,
    use_attempt: bool,
    worker: str | None,
) -> bool:
    info = tx.info(execution_id)
    if info is None:
        return False
    tx.lock_executions([execution_id])
    version = tx.version(info.version_id)
    kind = report.kind
    if kind == OutcomeKind.SUCCEEDED:
        store_logs(tx, execution_id, node_id, attempt, report, worker)
        output, chosen = sql.dumps(report.output), sql.dumps(report.chosen)
        if not _store_successes(
            tx, execution_id, [node_id], attempt, from_status, output, chosen, worker
        ):
            return False
        choice = tuple(report.chosen) if report.chosen is not None else None
        finished = {node_id: scheduler.ParentState(NodeStatus.SUCCEEDED, choice)}
        cascade.after_terminal(tx, info, version, finished, {node_id: report.output})
        return True
    store_logs(tx, execution_id, node_id, attempt, report, worker)
    guard = (
        (NodeRun.execution == execution_id)
        & (NodeRun.node_id == node_id)
        & (NodeRun.attempt == attempt)
        & (NodeRun.status == from_status)
    )
    if worker is not None:
        guard &= NodeRun.worker == worker
    if kind == OutcomeKind.SKIPPED:
        if not _moved(guard, status=NodeStatus.SKIPPED, finished_at=tx.now, due_at=None):
            return False
        tx.event(execution_id, node_id, events.NODE_SKIPPED, {"reason": "when"})
        finished = {node_id: scheduler.ParentState(NodeStatus.SKIPPED)}
        cascade.after_terminal(tx, info, version, finished)
        return True
    if kind == OutcomeKind.WAIT:
        wait_until = report.wait_until if report.wait_until is not None else tx.now
        changed = (
            NodeRun.update(status=NodeStatus.WAITING, output=report.output, due_at=wait_until)
            .where(guard)
            .execute()
        )
        if changed == 1:
            tx.event(
                execution_id,
                node_id,
                events.NODE_WAITING,
                {"until": wait_until, "attempt": attempt},
            )
        return changed == 1
    if kind == OutcomeKind.CHILD:
        failure = subworkflows.start_child(tx, info, version, node_id, attempt, report, worker)
        if failure is None:
            return True
        failed = Report("failed", error=failure)
        return record(tx, execution_id, node_id, attempt, from_status, failed, worker=worker)
    if kind == OutcomeKind.FANOUT:
        values = list(report.output or [])
        if not values:
            items.record_no_items(tx, execution_id, node_id, attempt)
            empty = Report("succeeded", output=[])
            return record(tx, execution_id, node_id, attempt, from_status, empty, worker=worker)
        return items.start_items(tx, info, version, node_id, attempt, values, worker)
    return _record_failure(tx, info, version, node_id, attempt, guard, report, use_attempt)


def _record_failure(
    tx: Tx,
    info: ExecutionInfo,
    version: LoadedVersion,
    node_id: str,
    attempt: int,
    guard: Any,
    report: Report,
    use_attempt: bool,
) -> bool:
    execution_id = info.id
    node = version.workflow.nodes[node_id]
    offset = (
        NodeRun.select(NodeRun.attempt_offset)
        .where((NodeRun.execution == execution_id) & (NodeRun.node_id == node_id))
        .scalar()
        or 0
    )
    budget_used = attempt - int(offset)
    failure = scheduler.retry_scope(attempt, report.error, report.exit_code, report.http_status)
    next_delay = (
        scheduler.next_retry_delay(node, budget_used, failure=failure) if use_attempt else None
    )
    if next_delay is not None:
        if not _moved(
            guard,
            status=NodeStatus.RETRYING,
            error=report.error,
            output=report.output,
            due_at=tx.now + next_delay,
            finished_at=tx.now,
        ):
            return False
        tx.event(
            execution_id,
            node_id,
            events.NODE_RETRYING,
            {
                "attempt": attempt,
                "error": first_line(report.error),
                "next_attempt_at": tx.now + next_delay,
            },
        )
        if next_delay <= 0:
            requeue(tx, execution_id, node, attempt + 1)
        return True
    if not _moved(
        guard,
        status=NodeStatus.FAILED,
        error=report.error or "failed",
        output=report.output,
        finished_at=tx.now,
        due_at=None,
    ):
        return False
    tx.event(
        execution_id,
        node_id,
        events.NODE_FAILED,
        {"attempt": attempt, "error": first_line(report.error)},
    )
    if not node.continue_on_fail:
        parents = (
            {
                row.node_id: row.output
                for row in NodeRun.select(NodeRun.node_id, NodeRun.output).where(
                    (NodeRun.execution == execution_id) & (NodeRun.node_id.in_(list(node.needs)))
                )
            }
            if node.needs
            else {}
        )
        letter = DeadLetter.create(
            execution_id=execution_id,
            workflow=info.workflow,
            node_id=node_id,
            error=report.error or "failed",
            attempts=budget_used,
            input=scheduler.node_input(version.workflow, node_id, info.input, parents),
            created_at=tx.now,
        )
        tx.event(execution_id, node_id, events.DEAD_LETTER_ADDED, {"dead_letter": letter.id})
    ended = {node_id: scheduler.ParentState(NodeStatus.FAILED)}
    if scheduler.fail_fast_stops(version.workflow, node_id, NodeStatus.FAILED):
        ended.update(fail_fast.stop_main_graph(tx, execution_id, version, node_id))
    cascade.after_terminal(tx, info, version, ended)
    return True


def _moved(guard: Any, **fields: Any) -> bool:
    """The guarded UPDATE of one node row; False when the guard matched nothing (stale)."""
    return int(NodeRun.update(**fields).where(guard).execute()) == 1


def requeue(tx: Tx, execution_id: str, node: Node, attempt: int) -> None:
    """A retry (or a lost node's attempt) back on its queue, with its outbox row."""
    node_id = node.id
    NodeRun.update(
        status=NodeStatus.QUEUED, attempt=attempt, queued_at=tx.now, due_at=None, worker=None
    ).where(
        (NodeRun.execution == execution_id)
        & (NodeRun.node_id == node_id)
        & (NodeRun.status.in_([NodeStatus.RETRYING, NodeStatus.RUNNING]))
    ).execute()
    tx.enqueue([dispatch_of(execution_id, node, attempt)])
    tx.event(execution_id, node_id, events.NODE_QUEUED, {"attempt": attempt})
