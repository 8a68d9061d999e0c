"""Small helpers the built-in executors share: turning rendered values into text, capping
captured output, and keeping secret values out of everything a node hands back."""

from __future__ import annotations

import json
from typing import Any

from spane_cli.nodes.base import NodeContext
from spane_cli.text import mask_in_value
from spane_cli.workflow.expressions import ExpressionError

# Captured stdout, stderr and HTTP bodies are capped so one chatty node cannot bloat the
# database row that keeps its output.
OUTPUT_CAP_BYTES = 64 * 1024


def as_text(value: Any) -> str:
    """A rendered value as a command-line or header string: containers become JSON."""
    if isinstance(value, dict | list | tuple):
        return json.dumps(value, separators=(",", ":"), default=str)
    return str(value)


def decode(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def cut_notice(cut_bytes: int) -> str:
    return f"[... {cut_bytes} bytes cut ...]\n"


def mask_value(context: NodeContext, value: Any) -> Any:
    """Mask secrets in every string inside `value` (outputs end up in the database)."""
    return mask_in_value(value, list(context.secrets.values()))


class ConfigError(Exception):
    """A config field that could not be rendered or used; the message names the field."""


def render_field(context: NodeContext, field: str, value: Any) -> Any:
    """Render one config field, turning an expression error into a ConfigError naming it."""
    try:
        return context.render(value)
    except ExpressionError as exc:
        raise ConfigError(f"{field}: {exc}") from None
