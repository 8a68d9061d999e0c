"""Bearer tokens on every route but health: `require(Scope.RUN)` is a FastAPI dependency
that answers 401 without a live token and 403 when its scope is too low.

The token is never logged nor echoed: messages name the token's stored name at most.
Wrong tokens are slowed down per client address: after a few in a window, each further
failure waits longer before it is answered, and the failures of one address wait in turn,
so guessing in parallel from one address does not go faster. The memory this takes is
bounded (a fixed number of addresses, forgotten after the window). It is per process, the
one piece of state a server keeps, and nothing another instance needs.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable

from cachetools import TTLCache
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from spane_cli.api.problems import ApiProblem
from spane_cli.store import tokens
from spane_cli.store.tokens import Scope, TokenRecord

__all__ = ["Scope", "TokenRecord", "failures", "require"]

FAILURE_WINDOW_SECONDS = 300.0
FREE_FAILURES = 20  # mistakes a client may make before it is slowed down
DELAY_STEP_SECONDS = 0.02
DELAY_MAX_SECONDS = 0.5  # with failures waiting in turn: 2 guesses a second
TRACKED_ADDRESSES = 10_000


class FailureTracker:
    """Recent authentication failures per client address, bounded in memory."""

    def __init__(self) -> None:
        self._counts: TTLCache[str, int] = TTLCache(TRACKED_ADDRESSES, FAILURE_WINDOW_SECONDS)
        self._locks: TTLCache[str, asyncio.Lock] = TTLCache(
            TRACKED_ADDRESSES, FAILURE_WINDOW_SECONDS
        )
        self._mutex = threading.Lock()

    def count(self, address: str) -> int:
        with self._mutex:
            return self._counts.get(address, 0)

    def delay(self, address: str) -> float:
        over = self.count(address) - FREE_FAILURES
        return 0.0 if over <= 0 else min(DELAY_MAX_SECONDS, over * DELAY_STEP_SECONDS)

    def record(self, address: str) -> None:
        with self._mutex:
            self._counts[address] = self._counts.get(address, 0) + 1

    def lock(self, address: str) -> asyncio.Lock:
        with self._mutex:
            lock = self._locks.get(address)
            if lock is None:
                lock = self._locks[address] = asyncio.Lock()
            return lock


failures = FailureTracker()


# Declares the bearer scheme in the OpenAPI document; the answer to a missing token is ours.
_scheme = HTTPBearer(auto_error=False, description="A token of `spane token create`")


def _unauthenticated(detail: str) -> ApiProblem:
    return ApiProblem(
        401, "unauthenticated", detail, headers={"WWW-Authenticate": 'Bearer realm="spane"'}
    )


async def _refuse(address: str, detail: str) -> ApiProblem:
    failures.record(address)
    delay = failures.delay(address)
    if delay:
        async with failures.lock(address):
            await asyncio.sleep(delay)
    return _unauthenticated(detail)


def require(scope: Scope) -> Callable[[Request], Awaitable[TokenRecord]]:
    """A dependency returning the request's token record, with at least `scope`."""

    async def dependency(
        request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(_scheme)
    ) -> TokenRecord:
        address = request.client.host if request.client else "unknown"
        token = credentials.credentials.strip() if credentials else None
        if not token:  # not a guess: nothing to slow down
            raise _unauthenticated("a bearer token is required: Authorization: Bearer TOKEN")
        now = time.time()
        record = await run_in_threadpool(tokens.authenticate, token, now)
        if record is None:
            raise await _refuse(address, "the token is unknown, expired or revoked")
        if not record.scope.includes(scope):
            raise ApiProblem(
                403,
                "forbidden",
                f"token {record.name!r} has scope {record.scope.value}; this needs {scope.value}",
            )
        request.state.token_name = record.name
        return record

    dependency.__name__ = f"require_{scope.value}"
    return dependency
