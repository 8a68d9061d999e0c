"""Running one claimed node on a worker: `when`, `foreach`, the executor, and the result.

Nothing here writes to the database: the runner turns a claim into a `Report`, and the
store records it in one guarded transaction.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import traceback
from collections.abc import Callable, Iterator, KeysView, Mapping
from typing import Any

from spane_cli import keeper, scheduler
from spane_cli.engine.time_limit import TimeLimitExceeded, time_limit
from spane_cli.fires import schedule_scope
from spane_cli.nodes.base import NodeContext, NodeResult
from spane_cli.states import NodeStatus, OutcomeKind
from spane_cli.store import queries
from spane_cli.store.records import ClaimedNode, Report
from spane_cli.text import mask_in_value, mask_secrets
from spane_cli.timeutil import iso
from spane_cli.workflow.durations import format_duration
from spane_cli.workflow.expressions import ExpressionError, evaluate, is_template, render_value
from spane_cli.workflow.model import Node, Workflow, thaw
from spane_cli.workflow.validate import bare_expression

SECRET_PREFIX = "SPANE_SECRET_"
# Node types that enforce their `timeout` themselves, around a process or a connection.
SELF_LIMITED_TYPES = frozenset({"shell", "http"})
# Node types whose whole work is rendering templates: bounded even without a `timeout`.
TEMPLATE_TYPES = frozenset({"transform", "branch", "noop", "fail", "delay", "workflow"})
# How long rendering a node's templates (`when`, `foreach`, a transform) may take.
TEMPLATE_SECONDS = 10.0

log = logging.getLogger("spane.worker")


def secrets_from_environment() -> dict[str, str]:
    """Secrets live only in the worker's environment and are resolved here, never stored."""
    return {
        key[len(SECRET_PREFIX) :]: value
        for key, value in os.environ.items()
        if key.startswith(SECRET_PREFIX) and value
    }


class LazyNodes(Mapping[str, Any]):
    """`nodes.<id>` for templates: reads a node's row only when a template touches it."""

    def __init__(self, execution_id: str, node_ids: KeysView[str]) -> None:
        # A view of the workflow's node ids, not a copy: building a tuple of 10,000 ids for
        # every node run made a big fan-out quadratic.
        self._execution_id = execution_id
        self._node_ids = node_ids
        self._cache: dict[str, dict[str, Any]] = {}

    def __getitem__(self, node_id: str) -> dict[str, Any]:
        if node_id not in self._node_ids:
            raise KeyError(node_id)
        if node_id not in self._cache:
            state = queries.node_state(self._execution_id, node_id)
            self._cache[node_id] = state or {"status": "pending", "output": None, "error": None}
        return self._cache[node_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self._node_ids)

    def __len__(self) -> int:
        return len(self._node_ids)


class LazyWorkflow(dict[str, Any]):
    """`workflow.*` for templates: `name`, and `status` and `failures`, read from the
    execution's node rows only when a template touches them (an exit handler does). A dict,
    so that a template that returns it whole (`{{ workflow }}`) stores plain data."""

    _LAZY = ("status", "failures")

    def __init__(self, execution_id: str, workflow: Workflow) -> None:
        super().__init__(name=workflow.name)
        self._execution_id = execution_id
        self._workflow = workflow

    def __missing__(self, key: str) -> Any:
        if key not in self._LAZY:
            raise KeyError(key)
        self._read()
        return self[key]

    def _read(self) -> None:
        workflow = self._workflow
        outcomes = [o for o in queries.node_outcomes(self._execution_id) if o[0] in workflow.nodes]
        statuses = {node_id: NodeStatus(status) for node_id, status, *_ in outcomes}
        self["status"] = scheduler.workflow_status(workflow, statuses)
        self["failures"] = [
            {
                "node": node_id,
                "status": status,
                "error": error,
                "attempts": attempt,
                "finished_at": iso(finished_at),
                "exit_handler": workflow.nodes[node_id].on_exit,
            }
            for node_id, status, error, attempt, finished_at in sorted(
                outcomes, key=lambda o: (o[4] or 0.0, o[0])
            )
            if status == NodeStatus.FAILED and not workflow.nodes[node_id].continue_on_fail
        ]


def _mask(text: str | None, secrets: Mapping[str, str]) -> str | None:
    return None if text is None else mask_secrets(text, secrets.values())


def run_claimed(
    claim: ClaimedNode,
    secrets: Mapping[str, str] | None = None,
    cancel_requested: Callable[[], bool] | None = None,
    log_stream: Callable[[str], None] | None = None,
) -> Report:
    """Run the node of `claim`; never raises for the node's own failure. A node type that
    streams its output hands it to `log_stream` while it runs (see live_logs.py)."""
    secrets = secrets_from_environment() if secrets is None else secrets
    workflow = claim.version.workflow
    node = workflow.nodes[claim.node_id]
    node_input = scheduler.node_input(workflow, node.id, claim.workflow_input, claim.parent_outputs)
    scope: dict[str, Any] = {
        "input": claim.workflow_input,
        "parents": node_input,
        "nodes": LazyNodes(claim.execution_id, workflow.nodes.keys()),
        "execution": {"id": claim.execution_id},
        "workflow": LazyWorkflow(claim.execution_id, workflow),
        "schedule": schedule_scope(claim.schedule),
        "secrets": dict(secrets),
        "attempt": claim.attempt,
    }
    try:
        if claim.item is not None:
            # One item of a foreach node, on whichever worker took its job.
            item_scope = {**scope, "item": claim.item_value, "index": claim.item}
            result = _run_once(
                claim, node, node_input, item_scope, secrets, cancel_requested, log_stream
            )
            return _report_of(result, secrets)
        # Only a node with `when` or `foreach` renders here: no limit to arm for the others.
        templates = node.when is not None or node.foreach is not None
        with time_limit(TEMPLATE_SECONDS if templates else None):
            if node.when is not None and not evaluate(bare_expression(node.when), scope):
                return Report(OutcomeKind.SKIPPED)
            if node.foreach is not None:
                # The items become jobs of their own; the node waits for them without a
                # worker. Items are stored, one row each: a secret they hold stays out.
                items = mask_in_value(_foreach_items(node, scope), list(secrets.values()))
                return Report(OutcomeKind.FANOUT, output=items)
        result = _run_once(claim, node, node_input, scope, secrets, cancel_requested, log_stream)
    except ExpressionError as exc:
        return Report(OutcomeKind.FAILED, error=_mask(str(exc), secrets))
    except TimeLimitExceeded:
        error = f"when/foreach templates took longer than {format_duration(TEMPLATE_SECONDS)}"
        return Report(OutcomeKind.FAILED, error=error)
    return _report_of(result, secrets)


def _report_of(result: NodeResult, secrets: Mapping[str, str]) -> Report:
    # Whatever a node type hands back is stored (outputs, a child's input): no secret in it,
    # whether or not the node type masked it itself.
    values = list(secrets.values())
    return Report(
        result.outcome,
        output=mask_in_value(result.output, values),
        error=_mask(result.error, secrets),
        logs=_mask(result.logs, secrets) or "",
        wait_until=result.wait_until,
        chosen=result.chosen,
        child_reference=result.child.reference if result.child else None,
        child_input=mask_in_value(result.child.input, values) if result.child else None,
        exit_code=result.exit_code,
        http_status=result.http_status,
    )


def _run_once(
    claim: ClaimedNode,
    node: Node,
    node_input: Any,
    scope: Mapping[str, Any],
    secrets: Mapping[str, str],
    cancel_requested: Callable[[], bool] | None,
    log_stream: Callable[[str], None] | None = None,
) -> NodeResult:
    from spane_cli.nodes.registry import node_type

    timeout = node.timeout
    if claim.timeout_at is not None:
        # Stopped at the deadline, the run's own report loses to the deadline's error: the
        # worker times the execution out before it records the report.
        left = max(claim.timeout_at - time.time(), 0.001)
        timeout = left if timeout is None else min(timeout, left)
    context = NodeContext(
        execution_id=claim.execution_id,
        workflow_name=claim.version.workflow.name,
        node_id=node.id,
        attempt=claim.attempt,
        config=node.config,
        input=node_input,
        scope=scope,
        timeout=timeout,
        secrets=secrets,
        logger=logging.getLogger(f"spane.node.{node.id}"),
        cancel_requested=cancel_requested,
        log_stream=log_stream,
    )
    limit = _in_process_limit(node.type, timeout)
    try:
        with _watchdog(limit), time_limit(limit):
            return node_type(node.type).run(context)
    except TimeLimitExceeded:
        assert limit is not None
        return NodeResult.failed(_timed_out(node.type, limit, timeout))
    except ExpressionError as exc:
        return NodeResult.failed(str(exc))
    except Exception as exc:  # a bug in a node type must fail the node, not the worker
        details = context.mask(traceback.format_exc())
        return NodeResult.failed(f"{type(exc).__name__}: {exc}\n{details}")


def _watchdog(limit: float | None) -> contextlib.AbstractContextManager[None]:
    """In a worker, the keeper kills the process when a run overstays its limit inside one
    C call that the signal cannot interrupt; the recovery then fails the node as timed out."""
    watcher = keeper.current()
    if (
        watcher is None
        or limit is None
        or threading.current_thread() is not threading.main_thread()
    ):
        return contextlib.nullcontext()
    return watcher.deadline(limit)


def _in_process_limit(type_name: str, timeout: float | None) -> float | None:
    """The signal-enforced limit of a node run: its timeout; for the types that only render
    templates, TEMPLATE_SECONDS when it has none. shell and http enforce their own timeout
    (a signal there could leave a process group behind)."""
    if type_name in SELF_LIMITED_TYPES:
        return None
    if type_name in TEMPLATE_TYPES:
        return min(timeout, TEMPLATE_SECONDS) if timeout is not None else TEMPLATE_SECONDS
    return timeout


def _timed_out(type_name: str, seconds: float, timeout: float | None) -> str:
    if timeout is not None and seconds >= timeout:
        return f"timed out after {format_duration(seconds)}"
    return f"templates of this {type_name} node took longer than {format_duration(seconds)}"


def _foreach_items(node: Node, scope: Mapping[str, Any]) -> list[Any]:
    source = node.foreach
    if isinstance(source, str):
        items = render_value(source, scope) if is_template(source) else evaluate(source, scope)
    else:
        items = render_value(thaw(source), scope)
    if isinstance(items, tuple):
        items = list(items)
    if not isinstance(items, list):
        raise ExpressionError(f"foreach must give a list, got {type(items).__name__}")
    return items
