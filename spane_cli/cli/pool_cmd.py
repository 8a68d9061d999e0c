"""`spane pool ...`: concurrency pools shared by every workflow and worker."""

from __future__ import annotations

import contextlib
import re
import sys
from typing import TYPE_CHECKING, Annotated

import typer

from spane_cli.cli.services import settings, store_only

if TYPE_CHECKING:
    from spane_cli.store.records import Dispatch

pool_app = typer.Typer(
    help="Concurrency pools: a node with `pool: NAME` (or `mutex: NAME`, a pool of size 1) "
    "runs only while it holds one of the pool's slots, across every worker. A size set here "
    "overrides the one a workflow file declares (`pools:`).",
    no_args_is_help=True,
)

NameArgument = Annotated[str, typer.Argument(help="The pool's name.", metavar="NAME")]
# schema.POOL_NAME_PATTERN, written out: importing the schema would slow every command; with
# `workflow:` before it, the pool of that workflow's `max_active`.
_NAME = re.compile(r"^(workflow:)?[a-z0-9][a-z0-9_.-]{0,63}$")


def _checked(name: str) -> str:
    from spane_cli.errors import UsageError

    if not _NAME.match(name):
        raise UsageError(
            f"bad pool name {name!r}: lowercase letters, digits, _ . - (64 at most),"
            " or workflow:NAME for a workflow's max_active"
        )
    return name


def _send(ctx: typer.Context, dispatches: list[Dispatch]) -> None:
    """Jobs of the waiters a change woke; their outbox rows are written already, so when Redis
    does not answer the workers' reconciler sends them instead."""
    if not dispatches:
        return
    from redis.exceptions import RedisError

    from spane_cli.engine.connections import open_redis
    from spane_cli.engine.dispatch import Dispatcher
    from spane_cli.errors import SpaneError

    with contextlib.suppress(SpaneError, RedisError):
        Dispatcher(open_redis(settings(ctx).redis_url)).enqueue(dispatches)


@pool_app.command("list")
def list_pools(ctx: typer.Context) -> None:
    """Every pool: size, holders (execution/node), waiters. -o json prints a bare array."""
    from rich.table import Table

    from spane_cli.cli.render import print_data
    from spane_cli.cli.tables import console
    from spane_cli.store.pool_views import holder_names, pool_list

    current, _ = store_only(ctx)
    views = pool_list()
    if print_data(views, current.output):
        return
    if not views:
        sys.stderr.write("no pools\n")
        return
    table = Table(show_edge=False)
    for column in ("name", "size", "set by", "held", "holders", "waiters"):
        table.add_column(column)
    for view in views:
        table.add_row(
            view["name"],
            "-" if view["size"] is None else str(view["size"]),
            view["set_by"],
            str(len(view["holders"])),
            holder_names(view["holders"]) or "-",
            str(len(view["waiters"])),
        )
    console().print(table)


@pool_app.command("set")
def set_size(
    ctx: typer.Context,
    name: NameArgument,
    size: Annotated[int, typer.Argument(help="How many slots (at least 1).", min=1)],
) -> None:
    """Set the pool's size (made if new); waiters it makes room for start at once."""
    current, store = store_only(ctx)
    _send(ctx, store.set_pool_size(_checked(name), size))
    if not current.quiet:
        sys.stdout.write(f"pool {name} size {size}\n")


@pool_app.command("rm")
def remove(ctx: typer.Context, name: NameArgument) -> None:
    """Drop the size set here: the workflows' declaration applies again (a pool no node holds
    or waits for is removed)."""
    from spane_cli.errors import NotFound
    from spane_cli.store.pool_views import pool_list

    current, store = store_only(ctx)
    if not any(view["name"] == _checked(name) for view in pool_list()):
        raise NotFound(f"no pool {name!r}")
    _send(ctx, store.set_pool_size(name, None))
    if not current.quiet:
        sys.stdout.write(f"pool {name} removed\n")
