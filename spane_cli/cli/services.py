"""What most commands need: settings, the store and (for dispatching) Redis."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from spane_cli.cli import completers

if TYPE_CHECKING:
    from spane_cli.config import Settings
    from spane_cli.engine.dispatch import Dispatcher
    from spane_cli.store.store import Store


def _full_execution_id(ctx: typer.Context, value: str | None) -> str | None:
    """An execution id argument as the full id: a unique prefix is accepted (queries)."""
    if value is None or ctx.resilient_parsing:  # shell completion runs no query
        return value
    from spane_cli.engine.connections import open_store
    from spane_cli.store import queries

    open_store(settings(ctx))
    return queries.resolve_execution_id(value)


ExecId = Annotated[
    str,
    typer.Argument(
        help="The execution id, or a unique prefix of it (at least 4 characters).",
        metavar="EXEC_ID",
        callback=_full_execution_id,
        autocompletion=completers.execution_ids,
    ),
]


OptionalExecId = Annotated[
    str | None,
    typer.Argument(
        help="The execution id or a unique prefix; none for every active one.",
        metavar="EXEC_ID",
        callback=_full_execution_id,
        autocompletion=completers.execution_ids,
    ),
]


def settings(ctx: typer.Context) -> Settings:
    from spane_cli.cli.app import settings_of

    return settings_of(ctx)


def store_and_dispatcher(ctx: typer.Context) -> tuple[Settings, Store, Dispatcher]:
    """Redis is checked first: nothing is written when it cannot carry the jobs."""
    from spane_cli.engine.connections import open_redis, open_store
    from spane_cli.engine.dispatch import Dispatcher

    current = settings(ctx)
    connection = open_redis(current.redis_url)
    return current, open_store(current), Dispatcher(connection)


def store_only(ctx: typer.Context) -> tuple[Settings, Store]:
    from spane_cli.engine.connections import open_store

    current = settings(ctx)
    return current, open_store(current)


def since_cutoff(since: str | None, option: str = "--since") -> float | None:
    """`--since 1d` as the epoch time it starts at; a bad duration is a usage error."""
    if not since:
        return None
    import time

    from spane_cli.errors import UsageError
    from spane_cli.workflow.durations import DurationError, parse_duration

    try:
        return time.time() - parse_duration(since)
    except DurationError as exc:
        raise UsageError(f"{option}: {exc}") from None
