"""`spane run FILE`: submit a workflow; with --local, run it here with nothing to start."""

from __future__ import annotations

import json
import sys
from functools import partial
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from spane_cli.errors import ExitCode, UsageError
from spane_cli.states import TERMINAL_EXECUTION, ExecutionStatus
from spane_cli.text import first_line

if TYPE_CHECKING:
    from spane_cli.config import Settings
    from spane_cli.store.store import Store
    from spane_cli.workflow.validate import ValidationResult

HELP = (
    "Validate FILE, register it, create an execution and dispatch its entry nodes. Prints the "
    "execution id at once (alone with -q). --wait waits for the end: exit 0 succeeded, "
    "1 failed, 5 cancelled, 124 when --timeout runs out. --local runs everything inside this "
    "command (an embedded Redis-protocol server and a worker; SQLite unless --db) and waits."
)

# Each terminal status's exit code (run --wait, run --local, watch).
EXIT_BY_STATUS: dict[str, ExitCode] = {
    ExecutionStatus.SUCCEEDED: ExitCode.OK,
    ExecutionStatus.FAILED: ExitCode.FAILED,
    ExecutionStatus.CANCELLED: ExitCode.CANCELLED,
}


def run(
    ctx: typer.Context,
    file: Annotated[str, typer.Argument(help="The workflow file.", metavar="FILE")],
    inputs: Annotated[
        list[str] | None,
        typer.Option(
            "-i",
            "--input",
            help=(
                "An input as NAME=VALUE. VALUE stays text for a string input; for other "
                "inputs it is JSON when it parses as JSON (5, true, [1,2])."
            ),
            metavar="K=V",
        ),
    ] = None,
    input_file: Annotated[
        str | None,
        typer.Option(
            "--input-file", help="Inputs from a JSON or YAML file, or - for stdin.", metavar="F"
        ),
    ] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Wait until the execution ends.")] = False,
    watch: Annotated[bool, typer.Option("--watch", help="Show progress until the end.")] = False,
    local: Annotated[
        bool, typer.Option("--local", help="Run here: embedded Redis and worker; implies --wait.")
    ] = False,
    idempotency_key: Annotated[
        str | None,
        typer.Option(
            "--idempotency-key", help="The same key returns the same execution.", metavar="K"
        ),
    ] = None,
    timeout: Annotated[
        str | None,
        typer.Option(
            "--timeout", help="Stop waiting after this long (exit 124), e.g. 10m.", metavar="DUR"
        ),
    ] = None,
    concurrency: Annotated[
        int, typer.Option("--concurrency", help="Worker threads with --local.", min=1)
    ] = 2,
    paths: Annotated[
        list[str] | None,
        typer.Option(
            "--path",
            "-P",
            help="With --local: a directory python nodes import from (repeatable).",
            metavar="DIR",
        ),
    ] = None,
) -> None:
    from spane_cli.cli.app import settings_of
    from spane_cli.engine.import_path import add_import_paths
    from spane_cli.engine.submit import validated_file
    from spane_cli.workflow.durations import DurationError, parse_duration

    settings = settings_of(ctx)
    if paths and not local:
        raise UsageError(
            "--path needs --local: python nodes import on the workers (spane worker --path)"
        )
    add_import_paths(paths or [])
    try:
        wait_limit = parse_duration(timeout) if timeout else None
    except DurationError as exc:
        raise UsageError(f"--timeout: {exc}") from None
    # Before touching any service: a bad file exits 2 everywhere. Checked once, here.
    validated = validated_file(file)
    # Typed by the inputs the file declares, so it is read first: "1.10" stays "1.10" for a
    # string input and is 1.1 for a number.
    given = _given_inputs(validated, input_file, inputs or [])
    if local:
        status: str | None = _run_local(
            settings, validated, given, idempotency_key, wait_limit, concurrency, watch
        )
    else:
        status = _run_remote(settings, validated, given, idempotency_key, wait, watch, wait_limit)
    if status is not None:
        raise typer.Exit(int(EXIT_BY_STATUS.get(status, ExitCode.FAILED)))


def _given_inputs(
    validated: ValidationResult, input_file: str | None, pairs: list[str]
) -> dict[str, Any]:
    from spane_cli.workflow.input_values import InputTextError, typed_document, typed_pairs

    specs = validated.workflow.inputs if validated.workflow is not None else ()
    given: dict[str, Any] = {}
    if input_file:
        try:
            given = typed_document(_read_input_file(input_file), specs, input_file)
        except InputTextError as exc:
            raise UsageError(f"--input-file {exc}") from None
    try:
        given.update(typed_pairs(pairs, specs))
    except InputTextError as exc:
        raise UsageError(str(exc)) from None
    return given


def _read_input_file(path: str) -> str:
    try:
        if path == "-":
            return sys.stdin.read()
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except UnicodeDecodeError:
        raise UsageError(f"--input-file {path}: not UTF-8 text (JSON or YAML expected)") from None
    except OSError as exc:
        raise UsageError(f"--input-file {path}: {first_line(str(exc))}") from None


def announce(
    execution_id: str, created: bool, settings: Settings, document_follows: bool = False
) -> None:
    """Print the new execution's id at once. When the command ends by printing the whole
    execution as JSON or YAML (`--wait`, `--local`, `--watch`), stdout keeps that one
    document and the id goes to stderr."""
    from spane_cli.config import OutputFormat

    machine = settings.output in (OutputFormat.JSON, OutputFormat.YAML)
    if machine and document_follows:
        if not settings.quiet:
            sys.stderr.write(f"spane: execution {execution_id}\n")
            sys.stderr.flush()
    elif settings.output is OutputFormat.JSON:
        sys.stdout.write(json.dumps({"id": execution_id, "created": created}) + "\n")
    elif settings.output is OutputFormat.YAML:
        sys.stdout.write(f"id: {execution_id}\ncreated: {str(created).lower()}\n")
    else:
        sys.stdout.write(execution_id + "\n")
    sys.stdout.flush()
    if not created and not settings.quiet:
        sys.stderr.write(f"spane: idempotency key matched existing execution {execution_id}\n")


def _run_local(
    settings: Settings,
    validated: ValidationResult,
    given: dict[str, Any],
    idempotency_key: str | None,
    wait_limit: float | None,
    concurrency: int,
    watch: bool,
) -> str:
    from spane_cli.cli.watch_cmd import follow_execution
    from spane_cli.config import OutputFormat
    from spane_cli.engine.local import run_local

    machine = settings.output in (OutputFormat.JSON, OutputFormat.YAML)

    def on_submitted(execution_id: str, created: bool) -> None:
        announce(execution_id, created, settings, document_follows=True)

    ran = run_local(
        settings,
        validated,
        given,
        idempotency_key=idempotency_key,
        wait_limit=wait_limit,
        concurrency=concurrency,
        on_submitted=on_submitted,
        follow=partial(follow_execution, to_stderr=machine) if watch else None,
    )
    if ran.timed_out:
        _gave_up(ran.execution_id, ran.status)
    if watch and not machine:
        return ran.status
    return report_end(ran.execution_id, settings)


def _run_remote(
    settings: Settings,
    validated: ValidationResult,
    given: dict[str, Any],
    idempotency_key: str | None,
    wait: bool,
    watch: bool,
    wait_limit: float | None,
) -> str | None:
    from spane_cli.engine.connections import open_redis, open_store
    from spane_cli.engine.dispatch import Dispatcher
    from spane_cli.engine.submit import submit_validated

    connection = open_redis(settings.redis_url)
    store = open_store(settings)
    execution_id, created, dispatches = submit_validated(
        store, validated, given, idempotency_key=idempotency_key
    )
    Dispatcher(connection).enqueue(dispatches)
    announce(execution_id, created, settings, document_follows=wait or watch)
    return follow_submitted(store, execution_id, settings, wait, watch, wait_limit)


def follow_submitted(
    store: Store,
    execution_id: str,
    settings: Settings,
    wait: bool,
    watch: bool,
    wait_limit: float | None,
) -> str | None:
    """After an announced submission: watch it or wait for it (the final status), or nothing
    to do (None)."""
    from spane_cli.config import OutputFormat

    machine = settings.output in (OutputFormat.JSON, OutputFormat.YAML)
    if watch:
        from spane_cli.cli.watch_cmd import follow_execution

        status = follow_execution(store, execution_id, wait_limit or None, to_stderr=machine)
        if status not in {s.value for s in TERMINAL_EXECUTION}:
            _gave_up(execution_id, status)
        if machine:
            return report_end(execution_id, settings)
        return status
    if not wait:
        return None
    return _wait_and_report(execution_id, wait_limit, settings)


def _gave_up(execution_id: str, status: str) -> NoReturn:
    sys.stderr.write(f"spane: gave up waiting for {execution_id} (still {status})\n")
    raise typer.Exit(int(ExitCode.TIMED_OUT))


def _wait_and_report(execution_id: str, wait_limit: float | None, settings: Settings) -> str:
    from spane_cli.engine.waiting import wait_for_end
    from spane_cli.store import queries

    # `--timeout 0` waits without a limit here (unlike `--local`): kept as it always was.
    if not wait_for_end([execution_id], within=wait_limit or None):
        _gave_up(execution_id, str(queries.execution_status(execution_id)))
    return report_end(execution_id, settings)


def report_end(execution_id: str, settings: Settings) -> str:
    """Print how an execution ended (all of it with -o json or yaml); returns its status."""
    from spane_cli.cli.render import dump_json, dump_yaml
    from spane_cli.config import OutputFormat
    from spane_cli.store import queries
    from spane_cli.store.views import execution_view
    from spane_cli.text import first_line

    view = execution_view(queries.require_execution(execution_id))
    if settings.output is OutputFormat.JSON:
        sys.stdout.write(dump_json(view) + "\n")
    elif settings.output is OutputFormat.YAML:
        sys.stdout.write(dump_yaml(view))
    # A failure always says why on stderr, -q and -o json included: cron mails what a
    # failing job printed there.
    succeeded = view["status"] == ExecutionStatus.SUCCEEDED
    if not succeeded or (settings.output is OutputFormat.TABLE and not settings.quiet):
        line = f"execution {execution_id} {view['status']}"
        if view["error"]:
            line += f": {first_line(view['error'])}"
        sys.stderr.write(line + "\n")
    return str(view["status"])
