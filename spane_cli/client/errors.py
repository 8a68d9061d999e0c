"""The client's errors: one class per problem kind of the HTTP API (RFC 9457 `type`
urn:spane:problem:KIND), raised alike by `Client` over HTTP and `LocalClient` in-process."""

from __future__ import annotations

from typing import Any


class SpaneClientError(Exception):
    """Root of every error the client raises. `status` is the HTTP status (the one the server
    would have answered, for LocalClient), `problem` the whole problem document."""

    kind = "error"
    status = 0

    def __init__(self, detail: str, problem: dict[str, Any] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.problem: dict[str, Any] = problem or {}
        self.status = int(self.problem.get("status") or type(self).status)


class InvalidRequest(SpaneClientError):
    """400 invalid, or a 422 of the request's fields: a bad value, filter or input."""

    kind = "invalid"
    status = 400


class InvalidWorkflow(InvalidRequest):
    """422 invalid-workflow: the uploaded document did not validate; `problems` holds each
    {file, line, column, path, message, text} as `spane validate` prints it."""

    kind = "invalid-workflow"
    status = 422

    @property
    def problems(self) -> list[dict[str, Any]]:
        return list(self.problem.get("problems") or [])


class Unauthenticated(SpaneClientError):
    """401: no token, or one that is unknown, expired or revoked."""

    kind = "unauthenticated"
    status = 401


class Forbidden(SpaneClientError):
    """403: the token's scope does not allow this."""

    kind = "forbidden"
    status = 403


class NotFound(SpaneClientError):
    """404: no such execution, workflow or dead letter."""

    kind = "not-found"
    status = 404


class Conflict(SpaneClientError):
    """409: refused in the resource's current state (cancelling a finished execution)."""

    kind = "conflict"
    status = 409


class ServiceUnavailable(SpaneClientError):
    """503 (or no answer at all): the server, its database or Redis is unreachable."""

    kind = "unreachable"
    status = 503


class WaitTimeout(SpaneClientError):
    """`wait` gave up before the execution ended; `execution` is how it was then."""

    kind = "timeout"

    def __init__(self, detail: str, execution: dict[str, Any]) -> None:
        super().__init__(detail)
        self.execution = execution


_BY_KIND: dict[str, type[SpaneClientError]] = {
    cls.kind: cls
    for cls in (InvalidRequest, InvalidWorkflow, Unauthenticated, Forbidden, NotFound, Conflict)
}
_BY_KIND["unreachable"] = ServiceUnavailable
_BY_STATUS: dict[int, type[SpaneClientError]] = {
    400: InvalidRequest,
    401: Unauthenticated,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: InvalidRequest,
    422: InvalidRequest,
    503: ServiceUnavailable,
}


def from_problem(status: int, problem: dict[str, Any]) -> SpaneClientError:
    """The error of a problem document (or of a bare status when the body was none)."""
    kind = str(problem.get("type", "")).rsplit(":", 1)[-1]
    cls = _BY_KIND.get(kind) or _BY_STATUS.get(status, SpaneClientError)
    detail = str(problem.get("detail") or f"HTTP {status}")
    return cls(detail, {"status": status, **problem})
