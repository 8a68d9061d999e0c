"""The Typer app: global options, the command list and the one place errors become exit codes."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from spane_cli import __version__
from spane_cli.cli import (
    bench_cmd,
    gc_cmd,
    graph_cmd,
    health_cmd,
    history_cmds,
    inspect_cmds,
    lifecycle_cmds,
    run_cmd,
    serve_cmd,
    validate_cmd,
    watch_cmd,
    worker_cmd,
)
from spane_cli.cli.breaker_cmd import breaker_app
from spane_cli.cli.db_cmd import db_app
from spane_cli.cli.dlq_cmd import dlq_app
from spane_cli.cli.global_options import COMPLETE_VAR, hoist_global_options, register_completion
from spane_cli.cli.hook_cmd import hook_app
from spane_cli.cli.pool_cmd import pool_app
from spane_cli.cli.render import error_line
from spane_cli.cli.schedule_cmd import schedule_app
from spane_cli.cli.token_cmd import token_app
from spane_cli.config import OutputFormat, Settings, resolve_settings
from spane_cli.errors import ExitCode, SpaneError

app = typer.Typer(
    name="spane",
    help="Run DAG workflows written in YAML on RQ workers, recorded in a database.\n\n"
    "Exit codes: 0 success, 1 failed, 2 bad usage or invalid workflow, 3 Redis or database "
    "unreachable, 4 not found, 5 cancelled, 124 timed out.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        sys.stdout.write(f"spane {__version__}\n")
        raise typer.Exit(0)


@app.callback()
def main_options(
    ctx: typer.Context,
    db: Annotated[
        str | None,
        typer.Option(
            "--db",
            envvar=["SPANE_DATABASE_URL", "DATABASE_URL"],  # the first one set wins
            help="Database URL (postgresql://... or sqlite:///path); "
            "default: SQLite in the state dir.",
            show_default=False,
        ),
    ] = None,
    redis: Annotated[
        str | None,
        typer.Option(
            "--redis",
            envvar=["SPANE_REDIS_URL", "REDIS_URL"],
            help="Redis URL; default redis://localhost:6379/0.",
            show_default=False,
        ),
    ] = None,
    output: Annotated[
        OutputFormat | None,
        typer.Option(
            "-o",
            "--output",
            help="Output format: table, wide (more columns), name (bare ids), json or yaml.",
        ),
    ] = None,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="Print only what scripts need.")] = (
        False
    ),
    debug: Annotated[
        bool, typer.Option("--debug", envvar="SPANE_DEBUG", help="Show tracebacks on errors.")
    ] = False,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Global options are accepted before or after the command name."""
    ctx.obj = resolve_settings(db, redis, output.value if output else None, quiet, debug)


app.command("validate", help=validate_cmd.HELP)(validate_cmd.validate)
app.command("graph", help=graph_cmd.HELP)(graph_cmd.graph)
app.command("run", help=run_cmd.HELP)(run_cmd.run)
app.command("worker", help=worker_cmd.HELP)(worker_cmd.worker)
app.command("get", help=inspect_cmds.GET_HELP)(inspect_cmds.get)
app.command("list", help=inspect_cmds.LIST_HELP)(inspect_cmds.list_executions)
app.command("watch")(watch_cmd.watch)
app.command("events")(history_cmds.events)
app.command("logs")(history_cmds.logs)
app.command("cancel")(lifecycle_cmds.cancel)
app.command("pause")(lifecycle_cmds.pause)
app.command("resume")(lifecycle_cmds.resume)
app.command("retry")(lifecycle_cmds.retry)
app.command("resubmit")(lifecycle_cmds.resubmit)
app.add_typer(dlq_app, name="dlq")
app.add_typer(schedule_app, name="schedule")
app.add_typer(pool_app, name="pool")
app.add_typer(breaker_app, name="breaker")
app.command("health")(health_cmd.health)
app.command("gc", help=gc_cmd.HELP)(gc_cmd.gc)
app.add_typer(db_app, name="db")
app.command("bench", help=bench_cmd.HELP)(bench_cmd.bench)
app.command("serve", help=serve_cmd.HELP)(serve_cmd.serve)
app.add_typer(token_app, name="token")
app.add_typer(hook_app, name="hook")


def settings_of(ctx: typer.Context) -> Settings:
    obj = ctx.find_root().obj
    return obj if isinstance(obj, Settings) else resolve_settings(None, None, None, False, False)


def main(argv: list[str] | None = None) -> None:
    if os.environ.get(COMPLETE_VAR):  # a shell asks for completions (completions/*)
        register_completion()
    args = hoist_global_options(list(sys.argv[1:] if argv is None else argv))
    debug = "--debug" in args
    try:
        returned = app(args=args, prog_name="spane", standalone_mode=False)
    except SpaneError as exc:
        if debug:
            raise
        error_line(exc.message)
        sys.exit(int(exc.exit_code))
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        error_line("aborted")
        sys.exit(130)
    except typer.TyperException as exc:  # Typer's own Click: usage errors carry exit code 2
        if debug:
            raise
        error_line(exc.format_message().replace("\n", " "))
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        error_line("interrupted")
        sys.exit(130)
    except Exception as exc:  # a bug: one line unless --debug
        if debug:
            raise
        error_line(f"internal error: {type(exc).__name__}: {exc} (rerun with --debug)")
        sys.exit(int(ExitCode.FAILED))
    # Without standalone mode Click hands back typer.Exit's code instead of raising it.
    sys.exit(returned if isinstance(returned, int) else 0)
