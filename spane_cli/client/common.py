"""What both clients share: the answer of a run, the terminal statuses, a YAML-or-path test."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from spane_cli.states import TERMINAL_EXECUTION

# Statuses after which an execution changes no more (until a retry reopens it).
TERMINAL = frozenset(str(status) for status in TERMINAL_EXECUTION)


@dataclass(frozen=True)
class Started:
    """A run that was asked for: its execution id, and False when an idempotency key matched
    an execution that existed already (that one's id)."""

    id: str
    created: bool


def document_of(path_or_yaml: str | os.PathLike[str]) -> tuple[str, str | None]:
    """(YAML text, file name): a path to a file is read, anything else is the text itself."""
    if isinstance(path_or_yaml, os.PathLike) or (
        "\n" not in str(path_or_yaml) and Path(str(path_or_yaml)).is_file()
    ):
        path = Path(path_or_yaml)
        return path.read_text(encoding="utf-8"), path.name
    return str(path_or_yaml), None
