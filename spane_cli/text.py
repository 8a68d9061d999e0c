"""Text the user sees: the one line of an error that tables, events and messages show, and
secret values masked out of whatever is kept."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Any


def first_line(text: str | None, default: str = "") -> str:
    """The first non-blank line of `text`, stripped; `default` when there is none."""
    for line in (text or "").splitlines():
        if line.strip():
            return line.strip()
    return default


def error_line(exc: BaseException) -> str:
    """The first line of an exception's message, or its class name when it has none."""
    return first_line(str(exc), type(exc).__name__)


# What a NUL character of a command's output becomes in stored text: PostgreSQL text cannot
# hold NUL, and a completion carrying one would fail on every try.
NUL_REPLACEMENT = "\ufffd"


def storable(text: str) -> str:
    """`text` as the database can hold it (NUL replaced)."""
    return text.replace("\x00", NUL_REPLACEMENT) if "\x00" in text else text


def mask_secrets(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret value replaced by ***, the longest first (a secret that is a
    part of another must not leave the rest of it behind)."""
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def mask_in_value(value: Any, secrets: Collection[str]) -> Any:
    """Every string inside `value` (dict keys too, lists and tuples walked) masked."""
    if not secrets:
        return value
    if isinstance(value, str):
        return mask_secrets(value, secrets)
    if isinstance(value, dict):
        return {mask_in_value(k, secrets): mask_in_value(v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [mask_in_value(v, secrets) for v in value]
    return value
