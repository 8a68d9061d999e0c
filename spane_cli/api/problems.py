"""Errors as RFC 9457 problem details (`application/problem+json`).

spane's errors carry the exit code the CLI would end with (spane_cli/errors.py); here each
maps to the HTTP status of the same meaning. Bad input is a 4xx, never a 500: FastAPI's own
request validation errors answer 422 in the same shape.
"""

from __future__ import annotations

import logging
import re
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from spane_cli.errors import (
    ExitCode,
    NotFound,
    OperationFailed,
    ServiceUnreachable,
    SpaneError,
    UsageError,
    WorkflowInvalid,
)

MEDIA_TYPE = "application/problem+json"
_TYPE_BASE = "urn:spane:problem:"
log = logging.getLogger("spane.api")


class FileProblem(BaseModel):
    """One problem of an uploaded workflow, as `spane validate` prints it."""

    file: str
    line: int | None = None
    column: int | None = None
    path: str | None = Field(default=None, description="Where in the document, e.g. nodes.a")
    message: str
    text: str = Field(description="The problem as one line: FILE:LINE:COL: message")


class InvalidParam(BaseModel):
    """A request parameter or body field that did not validate."""

    name: str
    reason: str


class Problem(BaseModel):
    """RFC 9457 problem details. `type` names the kind (urn:spane:problem:KIND); `exit_code`
    is the one `spane` would have exited with."""

    type: str = Field(examples=["urn:spane:problem:not-found"])
    title: str
    status: int
    detail: str
    instance: str | None = None
    exit_code: int | None = None
    problems: list[FileProblem] | None = Field(
        default=None, description="The workflow's problems (kind invalid-workflow)"
    )
    invalid_params: list[InvalidParam] | None = Field(
        default=None, description="The request's fields that did not validate (kind invalid)"
    )
    purged: int | None = Field(
        default=None, description="Dead letters deleted when some of the ids did not exist"
    )


class ApiProblem(Exception):
    """Raised in routes and dependencies for an answer that is a problem."""

    def __init__(
        self,
        status: int,
        kind: str,
        detail: str,
        *,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.kind = kind
        self.detail = detail
        self.headers = headers
        self.extra = extra


# The error kinds of spane, most specific first, with their status and problem kind.
_SPANE_ERRORS: tuple[tuple[type[SpaneError], HTTPStatus, str], ...] = (
    (WorkflowInvalid, HTTPStatus.UNPROCESSABLE_ENTITY, "invalid-workflow"),
    (UsageError, HTTPStatus.BAD_REQUEST, "invalid"),
    (NotFound, HTTPStatus.NOT_FOUND, "not-found"),
    (ServiceUnreachable, HTTPStatus.SERVICE_UNAVAILABLE, "unreachable"),
    # Refused (a finished execution cancelled, a replay of a replayed dead letter): the
    # request was sound but the resource's state says no.
    (OperationFailed, HTTPStatus.CONFLICT, "conflict"),
    (SpaneError, HTTPStatus.CONFLICT, "conflict"),
)

# Every status a route may answer with a problem, for the OpenAPI document.
DOCUMENTED: dict[int, str] = {
    400: "Invalid request (a bad value, filter or input)",
    401: "No token, or one that is unknown, expired or revoked",
    403: "The token's scope does not allow this",
    404: "No such execution, workflow or dead letter",
    409: "Refused in the resource's current state",
    422: "The request or the uploaded workflow did not validate",
    503: "The database or Redis is unreachable",
}


def status_of(error: SpaneError) -> tuple[HTTPStatus, str]:
    for kind, status, name in _SPANE_ERRORS:
        if isinstance(error, kind):
            return status, name
    return HTTPStatus.CONFLICT, "conflict"  # pragma: no cover - SpaneError is last


def file_problems(error: WorkflowInvalid) -> list[dict[str, Any]]:
    out = []
    for problem in error.problems:
        out.append(
            {
                "file": problem.file,
                "line": problem.line,
                "column": problem.column,
                "path": problem.path or None,
                "message": problem.message,
                "text": problem.render(),
            }
        )
    return out


def problem_response(
    status: int,
    kind: str,
    detail: str,
    *,
    instance: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": _TYPE_BASE + kind,
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
    }
    if instance:
        body["instance"] = instance
    body.update({k: v for k, v in extra.items() if v is not None})
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)


def _exit_code_for(status: int) -> int | None:
    return {
        400: ExitCode.USAGE,
        422: ExitCode.USAGE,
        404: ExitCode.NOT_FOUND,
        413: ExitCode.USAGE,
        503: ExitCode.UNREACHABLE,
        409: ExitCode.FAILED,
    }.get(status)


def install(app: FastAPI) -> None:
    """Answer every error the app can meet as a problem."""

    async def spane_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, SpaneError)
        status, kind = status_of(exc)
        extra: dict[str, Any] = {}
        if isinstance(exc, WorkflowInvalid):
            extra["problems"] = file_problems(exc)
        return problem_response(
            status,
            kind,
            exc.message,
            instance=request.url.path,
            exit_code=int(exc.exit_code),
            **extra,
        )

    async def api_problem(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiProblem)
        return problem_response(
            exc.status,
            exc.kind,
            exc.detail,
            instance=request.url.path,
            headers=exc.headers,
            exit_code=_exit_code_for(exc.status),
            **exc.extra,
        )

    async def validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        params = [
            {
                "name": ".".join(str(part) for part in error.get("loc", ())),
                "reason": str(error.get("msg", "invalid")),
            }
            for error in exc.errors()
        ]
        first = f"{params[0]['name']}: {params[0]['reason']}" if params else "invalid request"
        return problem_response(
            422,
            "invalid",
            first,
            instance=request.url.path,
            exit_code=int(ExitCode.USAGE),
            invalid_params=params,
        )

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        kinds = {404: "not-found", 405: "method-not-allowed", 401: "unauthenticated"}
        headers = dict(exc.headers) if exc.headers else {}
        if exc.status_code == 405:
            headers["Allow"] = ", ".join(_methods_of(request)) or headers.get("Allow", "")
        return problem_response(
            exc.status_code,
            kinds.get(exc.status_code, "http"),
            str(exc.detail),
            instance=request.url.path,
            headers=headers or None,
            exit_code=_exit_code_for(exc.status_code),
        )

    async def unreachable(request: Request, exc: Exception) -> JSONResponse:
        # The database or Redis went away during the request. The driver's message may
        # hold a host or a user name: it stays in the server's log.
        log.warning("service unreachable on %s %s: %s", request.method, request.url.path, exc)
        return problem_response(
            503,
            "unreachable",
            "the database or Redis did not answer; try again",
            instance=request.url.path,
            exit_code=int(ExitCode.UNREACHABLE),
        )

    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        # A bug: the log has the traceback, the client a line that tells nothing inside.
        log.error("internal error on %s %s", request.method, request.url.path, exc_info=exc)
        return problem_response(500, "internal", "internal error: the server's log has the details")

    app.add_exception_handler(SpaneError, spane_error)
    app.add_exception_handler(ApiProblem, api_problem)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    for kind in _unreachable_errors():
        app.add_exception_handler(kind, unreachable)
    app.add_exception_handler(Exception, internal_error)


def _methods_of(request: Request) -> list[str]:
    """Every method the request's path answers to, from the OpenAPI document: Starlette's
    405 names those of the first route with this path only, and a path may have a route per
    method."""
    table: list[tuple[re.Pattern[str], set[str]]] | None = getattr(
        request.app.state, "allowed_methods", None
    )
    if table is None:
        table = []
        for template, operations in request.app.openapi().get("paths", {}).items():
            integers = {
                parameter["name"]
                for operation in operations.values()
                for parameter in operation.get("parameters", ())
                if parameter.get("in") == "path"
                and parameter.get("schema", {}).get("type") == "integer"
            }
            pattern = re.sub(
                r"\\\{(\w+)\\\}",
                lambda found, integers=integers: (  # type: ignore[misc]
                    "[0-9]+" if found.group(1) in integers else "[^/]+"
                ),
                re.escape(template),
            )
            table.append((re.compile(f"^{pattern}$"), {m.upper() for m in operations}))
        request.app.state.allowed_methods = table
    path = request.scope.get("path", "")
    return sorted({m for pattern, methods in table if pattern.match(path) for m in methods})


def _unreachable_errors() -> tuple[type[Exception], ...]:
    import peewee
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    return (
        peewee.OperationalError,
        peewee.InterfaceError,
        RedisConnectionError,
        RedisTimeoutError,
    )


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The `responses=` of a route: its problem statuses, documented as problem+json."""
    return {
        status: {
            "description": DOCUMENTED[status],
            "content": {MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        for status in statuses
    }
