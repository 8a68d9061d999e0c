"""Query parameters several routes share, checked as the CLI checks its options."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import Query

from spane_cli.api.routes import cursors
from spane_cli.api.schemas import MAX_LIMIT
from spane_cli.errors import UsageError
from spane_cli.workflow.durations import DurationError, parse_duration
from spane_cli.workflow.schedule_spec import SCHEDULE_NAME_PATTERN
from spane_cli.workflow.schema import WORKFLOW_NAME_PATTERN

Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="At most this many (page size)")]
_CURSOR = "`next_cursor` of the previous page"
ExecutionCursor = Annotated[
    str | None, Query(max_length=100, pattern=cursors.EXECUTION_PATTERN, description=_CURSOR)
]
IntegerCursor = Annotated[
    str | None, Query(max_length=18, pattern=cursors.INTEGER_PATTERN, description=_CURSOR)
]
# Names as the language allows them: nothing else can match a row (and PostgreSQL refuses
# text with NUL in it, which a free string would let through).
WorkflowName = Annotated[
    str | None, Query(max_length=64, pattern=WORKFLOW_NAME_PATTERN, description="Its workflow")
]
ScheduleName = Annotated[
    str | None,
    Query(max_length=128, pattern=SCHEDULE_NAME_PATTERN, description="What this schedule fired"),
]
TextCursor = Annotated[
    str | None, Query(max_length=64, pattern=WORKFLOW_NAME_PATTERN, description=_CURSOR)
]
# The compact forms of spane's durations (a number of seconds, 90s, 1h30m, 2d).
_NUMBER = r"[0-9]{1,12}(\.[0-9]{1,6})?"
_SINCE_PATTERN = rf"^({_NUMBER}|({_NUMBER}(ms|s|m|h|d|w)){{1,6}})$"
Since = Annotated[
    str | None,
    Query(
        max_length=64,
        pattern=_SINCE_PATTERN,
        description="Created within this duration: seconds, or e.g. 90s, 1h30m, 2d",
    ),
]


def since_cutoff(since: str | None) -> float | None:
    if not since:
        return None
    try:
        return time.time() - parse_duration(since)
    except DurationError as exc:
        raise UsageError(f"since: {exc}") from None
