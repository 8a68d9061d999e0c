"""Dead letters: `spane dlq list`, `show`, `replay` and `purge`."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request

from spane_cli.api import context
from spane_cli.api.auth import Scope, TokenRecord, require
from spane_cli.api.problems import ApiProblem, responses
from spane_cli.api.routes import cursors
from spane_cli.api.routes.params import (
    IntegerCursor,
    Limit,
    Since,
    WorkflowName,
    since_cutoff,
)
from spane_cli.api.schemas import (
    MAX_ID,
    DeadLetterDetail,
    DeadLetterPage,
    PurgeAll,
    Purged,
    PurgeIds,
    Replayed,
)
from spane_cli.errors import NotFound

router = APIRouter(prefix="/dead-letters", tags=["dead letters"])

Reader = Annotated[TokenRecord, Depends(require(Scope.READ))]
Runner = Annotated[TokenRecord, Depends(require(Scope.RUN))]
Admin = Annotated[TokenRecord, Depends(require(Scope.ADMIN))]
LetterId = Annotated[int, Path(ge=1, le=MAX_ID, description="The dead letter id")]


@router.get(
    "",
    operation_id="list_dead_letters",
    summary="Dead letters, newest first (spane dlq list)",
    response_model=DeadLetterPage,
    responses=responses(400, 401, 403, 422, 503),
)
def list_dead_letters(
    request: Request,
    _: Reader,
    workflow: WorkflowName = None,
    since: Since = None,
    all: Annotated[bool, Query(description="Include replayed ones")] = False,
    limit: Limit = 50,
    cursor: IntegerCursor = None,
) -> dict[str, Any]:
    from spane_cli.store import queries
    from spane_cli.store.views import dead_letter_view

    context.store(request)
    rows = queries.dead_letter_page(
        include_replayed=all,
        workflow=workflow,
        created_since=since_cutoff(since),
        limit=limit + 1,
        before=cursors.integer_key(cursor),
    )
    page, more = rows[:limit], len(rows) > limit
    return {
        "items": [dead_letter_view(row) for row in page],
        "next_cursor": str(page[-1].id) if more and page else None,
    }


@router.get(
    "/{letter_id:int}",
    operation_id="get_dead_letter",
    summary="One dead letter, its input and the tail of its logs (spane dlq show)",
    response_model=DeadLetterDetail,
    responses=responses(401, 403, 404, 422, 503),
)
def get_dead_letter(letter_id: LetterId, request: Request, _: Reader) -> dict[str, Any]:
    from spane_cli.store import queries
    from spane_cli.store.views import dead_letter_view

    context.store(request)
    letter = queries.require_dead_letter(letter_id)
    logs = queries.node_log_text(letter.execution_id, letter.node_id)
    return {**dead_letter_view(letter), "input": letter.input, "logs_tail": logs[-4000:]}


@router.post(
    "/{letter_id:int}/replay",
    operation_id="replay_dead_letter",
    summary="Reopen the failed node and continue its execution (spane dlq replay)",
    response_model=Replayed,
    responses=responses(401, 403, 404, 409, 422, 503),
)
def replay_dead_letter(letter_id: LetterId, request: Request, _: Runner) -> Replayed:
    """A dead letter is replayed once: again is a 409 that changes nothing."""
    from spane_cli.store import queries

    store = context.store(request)
    letter = queries.require_dead_letter(letter_id)
    dispatcher = context.dispatcher(request)
    dispatches = store.replay_dead_letter(letter_id)
    dispatcher.enqueue(dispatches)
    return Replayed(
        id=letter_id, execution_id=letter.execution_id, nodes=[d.node_id for d in dispatches]
    )


@router.delete(
    "/{letter_id:int}",
    operation_id="purge_dead_letter",
    summary="Delete one dead letter (spane dlq purge ID)",
    response_model=Purged,
    responses=responses(401, 403, 404, 422, 503),
)
def purge_dead_letter(letter_id: LetterId, request: Request, _: Admin) -> Purged:
    store = context.store(request)
    if not store.purge_dead_letters([letter_id]):
        raise NotFound(f"no dead letter {letter_id}")
    return Purged(purged=1)


@router.post(
    "/purge",
    operation_id="purge_dead_letters",
    summary="Delete dead letters by id, or all of them (spane dlq purge)",
    response_model=Purged,
    responses=responses(400, 401, 403, 404, 422, 503),
)
def purge_dead_letters(body: PurgeIds | PurgeAll, request: Request, _: Admin) -> Purged:
    """`{"ids": [...]}` or `{"all": true}`. The executions and their history stay. 404 when
    some of the ids did not exist: the others are deleted, and the problem's `purged` says
    how many were."""
    store = context.store(request)
    ids = sorted(set(body.ids)) if isinstance(body, PurgeIds) else []
    removed = store.purge_dead_letters(ids or None)
    if ids and removed < len(ids):
        raise ApiProblem(
            404,
            "not-found",
            f"{len(ids) - removed} of the dead letters did not exist",
            purged=removed,
        )
    return Purged(purged=removed)
