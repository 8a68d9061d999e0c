"""Page cursors: the sort key of a page's last row, written out. Every string of a cursor's
pattern (in the OpenAPI document) names a place in the order, so none is refused once it
matches; clients still treat them as opaque and pass `next_cursor` back."""

from __future__ import annotations

# (created_at, id) of the last execution: `1764670000.123456_3f2a...`.
EXECUTION_PATTERN = r"^[0-9]{1,12}(\.[0-9]{1,20})?_[0-9A-Za-z-]{1,64}$"
# The last dead letter's id.
INTEGER_PATTERN = r"^[0-9]{1,18}$"
# The last workflow's name: any text.


def execution_cursor(created_at: float, execution_id: str) -> str:
    return f"{created_at!r}_{execution_id}"


def execution_key(cursor: str | None) -> tuple[float, str] | None:
    if cursor is None:
        return None
    created, _, execution_id = cursor.partition("_")
    return float(created), execution_id


def integer_key(cursor: str | None) -> int | None:
    return None if cursor is None else int(cursor)
