"""`spane db migrate` and `spane db status`."""

from __future__ import annotations

import sys

import typer

db_app = typer.Typer(help="Database schema migrations.", no_args_is_help=True)


@db_app.command("migrate", help="Apply pending migrations (safe to run concurrently).")
def migrate_command(ctx: typer.Context) -> None:
    from spane_cli.cli.app import settings_of
    from spane_cli.cli.render import print_data
    from spane_cli.engine.connections import open_store
    from spane_cli.store.migrations import migrate, migration_status

    settings = settings_of(ctx)
    store = open_store(settings, migrate_if_needed=False)
    applied = migrate(store.database)
    status = migration_status(store.database)
    if not print_data({"applied": applied, "version": status.current}, settings.output):
        for line in applied:
            sys.stdout.write(f"applied {line}\n")
        sys.stdout.write(f"schema version {status.current} (latest {status.latest})\n")


@db_app.command("status", help="Show the schema version; exit 1 when migrations are pending.")
def status_command(ctx: typer.Context) -> None:
    from spane_cli.cli.app import settings_of
    from spane_cli.cli.render import print_data
    from spane_cli.engine.connections import open_store
    from spane_cli.store.migrations import migration_status

    settings = settings_of(ctx)
    store = open_store(settings, migrate_if_needed=False)
    status = migration_status(store.database)
    data = {"version": status.current, "latest": status.latest, "pending": status.pending}
    if not print_data(data, settings.output):
        sys.stdout.write(f"schema version {status.current} (latest {status.latest})\n")
        for line in status.pending:
            sys.stdout.write(f"pending {line}\n")
    if not status.up_to_date:
        raise typer.Exit(1)
