"""Registered workflows and their versions (what `spane run` registered)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request

from spane_cli.api import context
from spane_cli.api.auth import Scope, TokenRecord, require
from spane_cli.api.problems import responses
from spane_cli.api.routes.params import Limit, TextCursor
from spane_cli.api.schemas import VersionDetail, VersionView, WorkflowPage
from spane_cli.timeutil import iso
from spane_cli.workflow.schema import WORKFLOW_NAME_PATTERN

router = APIRouter(prefix="/workflows", tags=["workflows"])

Reader = Annotated[TokenRecord, Depends(require(Scope.READ))]
Name = Annotated[
    str, Path(max_length=64, pattern=WORKFLOW_NAME_PATTERN, description="The workflow's name")
]
Number = Annotated[int, Path(ge=1, le=2**31 - 1, description="The version number")]


def _version(row: Any) -> dict[str, Any]:
    return {
        "name": row.name,
        "version": row.number,
        "content_hash": row.content_hash,
        "registered_at": iso(row.created_at),
    }


@router.get(
    "",
    operation_id="list_workflows",
    summary="Registered workflows by name",
    response_model=WorkflowPage,
    responses=responses(400, 401, 403, 422, 503),
)
def list_workflows(
    request: Request, _: Reader, limit: Limit = 50, cursor: TextCursor = None
) -> dict[str, Any]:
    from spane_cli.store import queries

    context.store(request)
    rows = queries.registered_workflows(limit + 1, after=cursor)
    page, more = rows[:limit], len(rows) > limit
    return {
        "items": [
            {
                "name": name,
                "versions": count,
                "latest_version": newest,
                "registered_at": iso(registered),
            }
            for name, count, newest, registered in page
        ],
        "next_cursor": page[-1][0] if more and page else None,
    }


@router.get(
    "/{name}/versions",
    operation_id="list_workflow_versions",
    summary="The versions of one workflow, newest first",
    response_model=list[VersionView],
    responses=responses(401, 403, 404, 422, 503),
)
def list_versions(name: Name, request: Request, _: Reader) -> list[dict[str, Any]]:
    from spane_cli.store import queries

    context.store(request)
    return [_version(row) for row in queries.workflow_versions(name)]


@router.get(
    "/{name}/versions/{number}",
    operation_id="get_workflow_version",
    summary="One version of a workflow, with its document",
    response_model=VersionDetail,
    responses=responses(401, 403, 404, 422, 503),
)
def get_version(name: Name, number: Number, request: Request, _: Reader) -> dict[str, Any]:
    from spane_cli.store import queries

    context.store(request)
    row = queries.require_workflow_version(name, number)
    return {
        **_version(row),
        "document": row.source["workflow"],
        "refs": dict(row.source.get("refs") or {}),
    }
