"""`spane token create|list|revoke`: the bearer tokens of `spane serve`."""

from __future__ import annotations

import sys
import time
from typing import Annotated

import typer

from spane_cli.cli.services import store_only

token_app = typer.Typer(
    help="Bearer tokens of the HTTP API (spane serve). A token's scope is read (list, get), "
    "run (also start, cancel, pause, resume, retry, resubmit, replay) or admin (also purge "
    "dead letters). Only a salted hash is stored: the secret is printed once, at creation.",
    no_args_is_help=True,
)

NameArgument = Annotated[str, typer.Argument(help="The token's name.", metavar="NAME")]


@token_app.command("create")
def create(
    ctx: typer.Context,
    name: NameArgument,
    scope: Annotated[
        str,
        typer.Option(
            "--scope",
            help="read, run or admin.",
            metavar="read|run|admin",
            autocompletion=lambda: ["read", "run", "admin"],
        ),
    ] = "read",
    expires: Annotated[
        str | None,
        typer.Option(
            "--expires", help="It stops working after this long, e.g. 90d.", metavar="DUR"
        ),
    ] = None,
) -> None:
    """Create a token and print it, once: it cannot be shown again (revoke and create
    another when it is lost). -o json prints the token's record with a `token` field."""
    from spane_cli.cli.render import print_data
    from spane_cli.errors import UsageError
    from spane_cli.store import tokens
    from spane_cli.workflow.durations import DurationError, parse_duration

    expires_at = None
    now = time.time()
    if expires is not None:
        try:
            seconds = parse_duration(expires)
        except DurationError as exc:
            raise UsageError(f"--expires: {exc}") from None
        if seconds <= 0:
            raise UsageError("--expires: must be longer than 0s")
        expires_at = now + seconds
    current, store = store_only(ctx)
    secret = tokens.create(store.database, name, scope, expires=expires_at, now=now)
    record = next(t for t in tokens.list_tokens() if t.name == name and t.revoked_at is None)
    if print_data({**record.to_json(now), "token": secret}, current.output):
        return
    sys.stdout.write(secret + "\n")
    if not current.quiet:
        sys.stderr.write(
            f"spane: token {name!r} ({record.scope.value}) created; it is shown only now\n"
        )


@token_app.command("list")
def list_tokens(
    ctx: typer.Context,
    all_tokens: Annotated[bool, typer.Option("--all", help="Include revoked ones.")] = False,
) -> None:
    """Tokens by name: scope, state, created, expires, last used (never the secret).
    -o json prints a bare array; -o name (or -q) bare names."""
    from rich.table import Table

    from spane_cli.cli.render import print_data
    from spane_cli.cli.tables import console, print_names
    from spane_cli.config import OutputFormat
    from spane_cli.store import tokens
    from spane_cli.timeutil import iso

    current, _ = store_only(ctx)
    now = time.time()
    records = [t for t in tokens.list_tokens() if all_tokens or t.revoked_at is None]
    if current.quiet or current.output is OutputFormat.NAME:
        print_names([t.name for t in records])
        return
    views = [t.to_json(now) for t in records]
    for view in views:
        for key in ("created_at", "expires_at", "revoked_at", "last_used_at"):
            value = view[key]
            view[key] = iso(value) if isinstance(value, float) else None
    if print_data(views, current.output):
        return
    table = Table(show_edge=False)
    for column in ("name", "scope", "state", "created", "expires", "last used"):
        table.add_column(column, no_wrap=True)
    for view in views:
        table.add_row(
            str(view["name"]),
            str(view["scope"]),
            str(view["state"]),
            str(view["created_at"]),
            str(view["expires_at"] or "never"),
            str(view["last_used_at"] or "-"),
        )
    console().print(table)


@token_app.command("revoke")
def revoke(ctx: typer.Context, name: NameArgument) -> None:
    """Revoke a token: its requests are refused from now on (exit 4 when there is no live
    token of that name). The name may be used again."""
    from spane_cli.store import tokens

    current, store = store_only(ctx)
    tokens.revoke(store.database, name)
    if not current.quiet:
        sys.stdout.write(f"revoked {name}\n")
