"""Settings from the global options and defaults, as one frozen dataclass.

The options read their SPANE_* (then unprefixed) environment variables themselves, through
Typer's `envvar`, so `--help` names them too.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from enum import StrEnum

DEFAULT_REDIS_URL = "redis://localhost:6379/0"


class OutputFormat(StrEnum):
    TABLE = "table"
    WIDE = "wide"  # the table with more columns
    NAME = "name"  # bare ids, one a line, for scripts (as `kubectl -o name`)
    JSON = "json"
    YAML = "yaml"


@dataclass(frozen=True)
class Settings:
    db_url: str | None = None  # None: the embedded SQLite file under the user's state dir
    redis_url: str = DEFAULT_REDIS_URL
    output: OutputFormat = OutputFormat.TABLE
    quiet: bool = False
    debug: bool = False


def resolve_settings(
    db: str | None, redis: str | None, output: str | None, quiet: bool, debug: bool
) -> Settings:
    return Settings(
        db_url=db or None,
        redis_url=redis or DEFAULT_REDIS_URL,
        output=OutputFormat(output) if output else OutputFormat.TABLE,
        quiet=quiet,
        debug=debug,
    )


def default_sqlite_path() -> str:
    """The embedded database file, under the user's state directory."""
    from platformdirs import user_state_dir

    directory = os.environ.get("SPANE_HOME") or user_state_dir("spane")
    os.makedirs(directory, exist_ok=True)
    return os.path.join(directory, "spane.db")
