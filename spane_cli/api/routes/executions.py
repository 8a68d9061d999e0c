"""Executions: `spane run`, `list`, `get`, `cancel`, `pause`, `resume`, `retry`, `resubmit`."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response

from spane_cli.api import context
from spane_cli.api.auth import Scope, TokenRecord, require
from spane_cli.api.problems import responses
from spane_cli.api.routes import cursors
from spane_cli.api.routes.params import (
    ExecutionCursor,
    Limit,
    ScheduleName,
    Since,
    WorkflowName,
    since_cutoff,
)
from spane_cli.api.schemas import (
    Changed,
    Created,
    ExecutionPage,
    ExecutionView,
    ResubmitRequest,
    Retried,
    RunDocument,
    RunRegistered,
)
from spane_cli.errors import OperationFailed
from spane_cli.states import ExecutionStatus

router = APIRouter(prefix="/executions", tags=["executions"])

Reader = Annotated[TokenRecord, Depends(require(Scope.READ))]
Runner = Annotated[TokenRecord, Depends(require(Scope.RUN))]
ExecutionId = Annotated[
    str,
    Path(
        min_length=1,
        max_length=64,
        pattern=r"^[0-9A-Za-z-]+$",
        description="The execution id, or a unique prefix of it (at least 4 characters)",
    ),
]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=255,
        # Printable ASCII without spaces at either end (HTTP would strip them).
        pattern=r"^[!-~]([ -~]*[!-~])?$",
        description="The same key returns the same execution (as `--idempotency-key`)",
    ),
]

_READ_ERRORS = responses(400, 401, 403, 404, 422, 503)
_WRITE_ERRORS = responses(400, 401, 403, 404, 409, 422, 503)


def _resolve(execution_id: str) -> str:
    from spane_cli.store import queries

    return queries.resolve_execution_id(execution_id)


def _created(response: Response, request: Request, execution_id: str, created: bool) -> Created:
    response.status_code = 201 if created else 200
    response.headers["Location"] = str(request.url_for("get_execution", execution_id=execution_id))
    return Created(id=execution_id, created=created)


@router.post(
    "",
    operation_id="run",
    summary="Start a run (spane run)",
    status_code=201,
    response_model=Created,
    responses={
        200: {"model": Created, "description": "The idempotency key matched an execution"},
        **_WRITE_ERRORS,
    },
)
def run(
    body: RunRegistered | RunDocument,
    request: Request,
    response: Response,
    _: Runner,
    idempotency_key: IdempotencyKey = None,
) -> Created:
    """Register and start a workflow: a registered one by `workflow` (and `version`), or an
    uploaded `document`, validated as `spane validate` does (its FILE:LINE:COL problems in
    a 422). 201 with the new id; 200 with the existing one when `Idempotency-Key` matched."""
    from spane_cli.engine.submit import submit_registered, submit_validated, validated_text

    store = context.store(request)
    if isinstance(body, RunDocument):
        validated = validated_text(body.document, body.filename)
        # Redis first, as the CLI: nothing is written when it cannot carry the jobs.
        dispatcher = context.dispatcher(request)
        execution_id, created, dispatches = submit_validated(
            store, validated, body.input, idempotency_key=idempotency_key
        )
    else:
        dispatcher = context.dispatcher(request)
        execution_id, created, dispatches = submit_registered(
            store, body.workflow, body.version, body.input, idempotency_key=idempotency_key
        )
    dispatcher.enqueue(dispatches)
    return _created(response, request, execution_id, created)


@router.get(
    "",
    operation_id="list_executions",
    summary="List executions, newest first (spane list)",
    response_model=ExecutionPage,
    response_model_exclude_unset=True,  # the SPEC's shape: a node has `items` when foreach
    responses=_READ_ERRORS,
)
def list_executions(
    request: Request,
    _: Reader,
    status: Annotated[ExecutionStatus | None, Query()] = None,
    workflow: WorkflowName = None,
    since: Since = None,
    schedule: ScheduleName = None,
    limit: Limit = 50,
    cursor: ExecutionCursor = None,
) -> dict[str, Any]:
    from spane_cli.store import queries
    from spane_cli.store.views import execution_view

    context.store(request)
    rows = queries.execution_page(
        status=status.value if status else None,
        workflow=workflow,
        created_since=since_cutoff(since),
        schedule=schedule,
        limit=limit + 1,
        before=cursors.execution_key(cursor),
    )
    page, more = rows[:limit], len(rows) > limit
    last = page[-1] if page else None
    return {
        "items": [execution_view(row, with_nodes=False) for row in page],
        "next_cursor": (
            cursors.execution_cursor(last.created_at, last.id) if more and last else None
        ),
    }


@router.get(
    "/{execution_id}",
    operation_id="get_execution",
    summary="One execution with every node (spane get -o json)",
    response_model=ExecutionView,
    response_model_exclude_unset=True,
    responses=_READ_ERRORS,
)
def get_execution(execution_id: ExecutionId, request: Request, _: Reader) -> dict[str, Any]:
    from spane_cli.store import queries
    from spane_cli.store.views import execution_view

    context.store(request)
    return execution_view(queries.require_execution(_resolve(execution_id)))


@router.post(
    "/{execution_id}/cancel",
    operation_id="cancel",
    summary="Cancel an execution (spane cancel)",
    response_model=Changed,
    responses=_WRITE_ERRORS,
)
def cancel(execution_id: ExecutionId, request: Request, _: Runner) -> Changed:
    """Running nodes are stopped within seconds, nothing downstream runs. 409 when it had
    already ended."""
    store = context.store(request)
    full_id = _resolve(execution_id)
    if not store.cancel(full_id):
        status = store.require_execution(full_id).status
        raise OperationFailed(f"execution {full_id} already ended ({status})")
    return Changed(id=full_id, status=ExecutionStatus.CANCELLED)


def _status(store: Any, execution_id: str) -> Changed:
    return Changed(id=execution_id, status=store.require_execution(execution_id).status)


@router.post(
    "/{execution_id}/pause",
    operation_id="pause",
    summary="Stop dispatching new nodes (spane pause)",
    response_model=Changed,
    responses=_WRITE_ERRORS,
)
def pause(execution_id: ExecutionId, request: Request, _: Runner) -> Changed:
    store = context.store(request)
    full_id = _resolve(execution_id)
    store.set_paused(full_id, True)
    return _status(store, full_id)


@router.post(
    "/{execution_id}/resume",
    operation_id="resume",
    summary="Dispatch again what is ready in a paused execution (spane resume)",
    response_model=Changed,
    responses=_WRITE_ERRORS,
)
def resume(execution_id: ExecutionId, request: Request, _: Runner) -> Changed:
    store = context.store(request)
    full_id = _resolve(execution_id)
    dispatcher = context.dispatcher(request)
    dispatcher.enqueue(store.set_paused(full_id, False))
    return _status(store, full_id)


@router.post(
    "/{execution_id}/retry",
    operation_id="retry",
    summary="Re-run the failed nodes of a failed execution (spane retry)",
    response_model=Retried,
    responses=_WRITE_ERRORS,
)
def retry(execution_id: ExecutionId, request: Request, _: Runner) -> Retried:
    store = context.store(request)
    full_id = _resolve(execution_id)
    dispatcher = context.dispatcher(request)
    dispatches = store.retry_execution(full_id)
    dispatcher.enqueue(dispatches)
    return Retried(id=full_id, nodes=[d.node_id for d in dispatches])


@router.post(
    "/{execution_id}/resubmit",
    operation_id="resubmit",
    summary="A new execution of the same version and input (spane resubmit)",
    status_code=201,
    response_model=Created,
    responses=_WRITE_ERRORS,
)
def resubmit(
    execution_id: ExecutionId,
    request: Request,
    response: Response,
    _: Runner,
    body: ResubmitRequest | None = None,
) -> Created:
    """`input` changes some inputs, checked against the workflow's declarations."""
    from spane_cli.engine.submit import resolve_inputs

    store = context.store(request)
    old = store.require_execution(_resolve(execution_id))
    dispatcher = context.dispatcher(request)
    workflow = store.versions.get(old.version_id).workflow
    overrides = body.input if body else {}
    given = resolve_inputs(workflow, {**(old.input or {}), **overrides})
    new_id, created, dispatches = store.create_execution(old.version_id, given)
    dispatcher.enqueue(dispatches)
    return _created(response, request, new_id, created)
