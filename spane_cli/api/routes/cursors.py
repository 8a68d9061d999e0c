"""Opaque page cursors: the sort key of a page's last row, as URL-safe base64 of JSON."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from spane_cli.errors import UsageError


def encode(key: Any) -> str:
    raw = json.dumps(key, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(cursor: str) -> Any:
    """The key a cursor holds; UsageError (400) for one this server did not make."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        return json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (ValueError, binascii.Error, UnicodeError):
        raise UsageError("invalid cursor: pass next_cursor of the previous page") from None


def execution_key(cursor: str | None) -> tuple[float, str] | None:
    if cursor is None:
        return None
    key = decode(cursor)
    if (
        isinstance(key, list)
        and len(key) == 2
        and isinstance(key[0], int | float)
        and not isinstance(key[0], bool)
        and isinstance(key[1], str)
    ):
        return float(key[0]), key[1]
    raise UsageError("invalid cursor: pass next_cursor of the previous page")


def integer_key(cursor: str | None) -> int | None:
    if cursor is None:
        return None
    key = decode(cursor)
    if isinstance(key, int) and not isinstance(key, bool) and abs(key) < 2**62:
        return key
    raise UsageError("invalid cursor: pass next_cursor of the previous page")


def text_key(cursor: str | None) -> str | None:
    if cursor is None:
        return None
    key = decode(cursor)
    if isinstance(key, str):
        return key
    raise UsageError("invalid cursor: pass next_cursor of the previous page")
