"""Query parameters several routes share, checked as the CLI checks its options."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import Query

from spane_cli.api.schemas import MAX_LIMIT
from spane_cli.errors import UsageError
from spane_cli.workflow.durations import DurationError, parse_duration

Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="At most this many (page size)")]
Cursor = Annotated[
    str | None,
    Query(max_length=512, description="`next_cursor` of the previous page"),
]
Since = Annotated[
    str | None,
    Query(max_length=32, description="Created within this duration, e.g. 1h or 2d"),
]


def since_cutoff(since: str | None) -> float | None:
    if not since:
        return None
    try:
        return time.time() - parse_duration(since)
    except DurationError as exc:
        raise UsageError(f"since: {exc}") from None
