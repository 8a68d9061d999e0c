"""Settings from flags, SPANE_* environment variables and defaults, as one frozen dataclass."""

from __future__ import annotations

import os
from dataclasses import dataclass
from enum import StrEnum

DEFAULT_REDIS_URL = "redis://localhost:6379/0"


class OutputFormat(StrEnum):
    TABLE = "table"
    JSON = "json"
    YAML = "yaml"


@dataclass(frozen=True)
class Settings:
    db_url: str | None = None  # None: the embedded SQLite file under the user's state dir
    redis_url: str = DEFAULT_REDIS_URL
    output: OutputFormat = OutputFormat.TABLE
    quiet: bool = False
    debug: bool = False


def _first_env(*names: str) -> str | None:
    for name in names:
        value = os.environ.get(name)
        if value:
            return value
    return None


def resolve_settings(
    db: str | None, redis: str | None, output: str | None, quiet: bool, debug: bool
) -> Settings:
    return Settings(
        db_url=db or _first_env("SPANE_DATABASE_URL", "DATABASE_URL"),
        redis_url=redis or _first_env("SPANE_REDIS_URL", "REDIS_URL") or DEFAULT_REDIS_URL,
        output=OutputFormat(output) if output else OutputFormat.TABLE,
        quiet=quiet,
        debug=debug or os.environ.get("SPANE_DEBUG", "") not in ("", "0"),
    )


def default_sqlite_path() -> str:
    """The embedded database file, under the user's state directory."""
    from platformdirs import user_state_dir

    directory = os.environ.get("SPANE_HOME") or user_state_dir("spane")
    os.makedirs(directory, exist_ok=True)
    return os.path.join(directory, "spane.db")
