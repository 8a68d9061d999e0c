"""Events and logs of an execution as Server-Sent Events and NDJSON streams.

Each stream follows its execution to its end, as `spane events --follow` and `spane logs -f`
do, and then closes. Every SSE message carries the row's database id as its `id`, so a client
that lost its connection sends `Last-Event-ID` (or `?after=ID`) and gets every row after that
one, each once. The rows come from the process's one reader (engine/feeds.py): a thousand
followers cost the database one query per look, not one each.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from typing import Annotated, Any

import peewee
from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.concurrency import run_in_threadpool

from spane_cli.api import context
from spane_cli.api.auth import Scope, require
from spane_cli.api.problems import responses
from spane_cli.api.routes.executions import ExecutionId
from spane_cli.api.schemas import MAX_ID
from spane_cli.engine.feeds import EVENTS, LOGS, FeedPoller, shared_poller
from spane_cli.store import queries
from spane_cli.store.store import Store
from spane_cli.store.views import event_view
from spane_cli.timeutil import iso
from spane_cli.workflow.schema import NODE_ID_PATTERN

router = APIRouter(tags=["streams"])

SSE = "text/event-stream"
NDJSON = "application/x-ndjson"
# Batches a slow client may have waiting before the reader skips it (and reads its rows
# again later, from its cursor): memory per follower stays bounded.
WAITING_BATCHES = 8
# A comment line this often keeps proxies from closing a quiet stream.
PING_SECONDS = 15


class EventRecord(BaseModel):
    """An event as `spane events -o json` prints it (SPEC §2)."""

    id: int
    execution_id: str
    node_id: str | None
    type: str = Field(examples=["node.started"])
    data: Any
    time: str | None


class LogRecord(BaseModel):
    """A captured line as `spane logs -o json` prints it."""

    execution_id: str
    node_id: str
    attempt: int
    item: int | None
    time: str | None
    text: str


# What one row of each stream holds.
_ROW_SCHEMAS: dict[str, dict[str, Any]] = {
    EVENTS: EventRecord.model_json_schema(),
    LOGS: LogRecord.model_json_schema(),
}
_END_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["execution_id", "status"],
    "properties": {"execution_id": {"type": "string"}, "status": {"type": "string"}},
}


def _stream_doc(kind: str) -> dict[str, Any]:
    """The 200 answer's content. Under `text/event-stream` the schema is that of one event
    as an EventSource parser hands it over (OpenAPI 3.1 has no `itemSchema`): a `message`
    whose `data` is a row's JSON and whose `id` is its id, and a last `end` event."""
    row = _ROW_SCHEMAS[kind]
    return {
        SSE: {
            "schema": {
                "type": "object",
                "required": ["data"],
                "properties": {
                    "event": {"type": "string", "enum": ["message", "end"]},
                    "id": {"type": "string", "pattern": "^[0-9]+$"},
                    "data": {
                        "type": "string",
                        "contentMediaType": "application/json",
                        "contentSchema": {"oneOf": [row, _END_SCHEMA]},
                    },
                    "retry": {"type": "integer"},
                },
            },
            "example": 'id: 42\ndata: {"id": 42, "type": "node.started", ...}\n\n',
        },
        NDJSON: {
            "schema": {"type": "string", "description": "One row's JSON per line"},
            "x-row-schema": row,
        },
    }


def _stream_responses(kind: str, description: str) -> dict[int | str, dict[str, Any]]:
    documented = responses(400, 401, 403, 404, 422, 503)
    documented[200] = {"description": description, "content": _stream_doc(kind)}
    return documented


def poller(store: Store) -> FeedPoller:
    return shared_poller(isinstance(store.database, peewee.PostgresqlDatabase))


def event_record(row: Any) -> dict[str, Any]:
    """An event as `spane events -o json` prints it (SPEC §2)."""
    return json.loads(json.dumps(event_view(row), default=str))


def log_record(row: Any) -> dict[str, Any]:
    """A log row as `spane logs -o json` prints it."""
    return {
        "execution_id": row.execution_id,
        "node_id": row.node_id,
        "attempt": row.attempt,
        "item": row.item,
        "time": iso(row.created_at),
        "text": row.text,
    }


async def followed_rows(
    feeds: FeedPoller, kind: str, execution_id: str, after: int, node_id: str | None = None
) -> AsyncIterator[Any]:
    """The rows after `after`, in order, until the execution has ended and all are read."""
    loop = asyncio.get_running_loop()
    waiting: asyncio.Queue[tuple[list[Any], bool]] = asyncio.Queue()

    def deliver(rows: Sequence[Any], ended: bool) -> None:  # on the reader's thread
        loop.call_soon_threadsafe(waiting.put_nowait, (list(rows), ended))

    follower = feeds.follow(
        kind,
        execution_id,
        after,
        deliver,
        node_id=node_id,
        ready=lambda: waiting.qsize() < WAITING_BATCHES,
    )
    try:
        while True:
            rows, ended = await waiting.get()
            for row in rows:
                yield row
            if ended:
                return
    finally:
        feeds.unfollow(follower)


def _cursor(last_event_id: str, after: int | None) -> int:
    """Where a stream starts: after `Last-Event-ID` (a reconnecting EventSource sends it;
    its pattern lets only digits through), else after `?after=`, else from the first row.
    The reader's own bound (engine/feeds.py) keeps every cursor in the id column's range."""
    if last_event_id:
        return min(int(last_event_id), MAX_ID)
    return min(after or 0, MAX_ID)


def _wants_ndjson(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return NDJSON in accept and SSE not in accept


async def _resolve(store: Store, execution_id: str) -> str:
    return await run_in_threadpool(queries.resolve_execution_id, execution_id)


def _stream(
    request: Request,
    store: Store,
    kind: str,
    execution_id: str,
    after: int,
    node_id: str | None,
) -> StreamingResponse | EventSourceResponse:
    feeds = poller(store)
    render = event_record if kind == EVENTS else log_record
    rows = followed_rows(feeds, kind, execution_id, after, node_id)
    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    if _wants_ndjson(request):

        async def lines() -> AsyncIterator[str]:
            async for row in rows:
                yield json.dumps(render(row)) + "\n"

        return StreamingResponse(lines(), media_type=NDJSON, headers=headers)

    async def messages() -> AsyncIterator[ServerSentEvent]:
        async for row in rows:
            yield ServerSentEvent(data=json.dumps(render(row)), id=str(row.id))
        status = await run_in_threadpool(queries.execution_status, execution_id)
        # No id: a client that reconnects after the end resumes after the last row, and
        # gets this end again at once.
        yield ServerSentEvent(
            data=json.dumps({"execution_id": execution_id, "status": status}), event="end"
        )

    return EventSourceResponse(messages(), headers=headers, ping=PING_SECONDS)


# A plain string, empty when absent: a header has no null, and a document that said
# `string or null` would have clients send the text "null".
LastEventId = Annotated[
    str,
    Header(
        alias="Last-Event-ID",
        max_length=40,
        pattern=r"^([0-9]{1,16})?$",
        description="Resume after this event id (sent by a reconnecting EventSource).",
    ),
]
After = Annotated[
    int | None,
    Query(
        ge=0,
        le=MAX_ID,
        description="Start after this id (Last-Event-ID wins when both are given).",
    ),
]


@router.get(
    "/executions/{execution_id}/events",
    summary="Follow an execution's events (SSE or NDJSON)",
    response_class=StreamingResponse,
    responses=_stream_responses(EVENTS, "The events, until the execution ends"),
)
async def execution_events(
    request: Request,
    execution_id: ExecutionId,
    _: Annotated[Any, Depends(require(Scope.READ))],
    store: Annotated[Store, Depends(context.store)],
    last_event_id: LastEventId = "",
    after: After = None,
) -> Any:
    """The execution's events in order, as `spane events --follow -o json` prints them, then
    an `end` event with its status. Server-Sent Events (each `id` is the event's id; resume
    with `Last-Event-ID`), or NDJSON with `Accept: application/x-ndjson`."""
    cursor = _cursor(last_event_id, after)
    full_id = await _resolve(store, execution_id)
    return _stream(request, store, EVENTS, full_id, cursor, None)


@router.get(
    "/executions/{execution_id}/logs",
    summary="Follow an execution's captured output (SSE or NDJSON)",
    response_class=StreamingResponse,
    responses=_stream_responses(LOGS, "The log lines, until the execution ends"),
)
async def execution_logs(
    request: Request,
    execution_id: ExecutionId,
    _: Annotated[Any, Depends(require(Scope.READ))],
    store: Annotated[Store, Depends(context.store)],
    node: Annotated[
        str | None,
        Query(max_length=128, pattern=NODE_ID_PATTERN, description="Only this node's output."),
    ] = None,
    last_event_id: LastEventId = "",
    after: After = None,
) -> Any:
    """Captured output as `spane logs -f -o json` prints it ({execution_id, node_id, attempt,
    item, time, text}), then an `end` event. Resumes like the events stream."""
    cursor = _cursor(last_event_id, after)
    full_id = await _resolve(store, execution_id)
    if node is not None:
        await run_in_threadpool(_require_node, store, full_id, node)
    return _stream(request, store, LOGS, full_id, cursor, node)


def _require_node(store: Store, execution_id: str, node_id: str) -> None:
    from spane_cli.errors import NotFound

    execution = store.require_execution(execution_id)
    if node_id not in store.versions.get(execution.version_id).workflow.nodes:
        raise NotFound(f"execution {execution_id} has no node {node_id!r}")


class StreamStats(BaseModel):
    """What this server process's streams cost: one reader for all of them."""

    followers: int = Field(description="Streams open now")
    executions: int = Field(description="Executions they follow")
    polls: int = Field(description="Looks at the database since the process started")
    queries: int = Field(description="Statements those looks sent (one per look and kind)")
    errors: int = Field(description="Looks that failed (the database was unreachable)")
    interval_seconds: float
    settle_seconds: float


@router.get(
    "/streams",
    summary="What this process's event and log streams cost",
    response_model=StreamStats,
    responses=responses(401, 403, 503),
)
def stream_stats(
    _: Annotated[Any, Depends(require(Scope.READ))],
    store: Annotated[Store, Depends(context.store)],
) -> StreamStats:
    """Open streams of this process and the reads their one reader made. Streams are not
    shared between server processes: each has its own reader."""
    feeds = poller(store)
    followers, executions = feeds.counts()
    return StreamStats(
        followers=followers,
        executions=executions,
        polls=feeds.stats.polls,
        queries=feeds.stats.queries,
        errors=feeds.stats.errors,
        interval_seconds=feeds.interval,
        settle_seconds=feeds.settle,
    )
