"""Turning error texts into the one line that tables, events and messages show."""

from __future__ import annotations


def first_line(text: str | None, default: str = "") -> str:
    """The first non-blank line of `text`, stripped; `default` when there is none."""
    for line in (text or "").splitlines():
        if line.strip():
            return line.strip()
    return default


def error_line(exc: BaseException) -> str:
    """The first line of an exception's message, or its class name when it has none."""
    return first_line(str(exc), type(exc).__name__)
