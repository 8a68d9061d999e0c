"""`spane cancel|pause|resume|retry|resubmit EXEC_ID`."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from spane_cli.cli.services import ExecId, store_and_dispatcher, store_only


def _say(quiet: bool, text: str) -> None:
    if not quiet:
        sys.stdout.write(text + "\n")


def cancel(ctx: typer.Context, execution_id: ExecId) -> None:
    """Cancel an execution: running nodes are stopped (process group killed) within seconds,
    nothing downstream runs. Exit 1 when it had already ended."""
    from spane_cli.errors import OperationFailed

    current, store = store_only(ctx)
    if not store.cancel(execution_id):
        status = store.require_execution(execution_id).status
        raise OperationFailed(f"execution {execution_id} already ended ({status})")
    _say(current.quiet, f"cancelled {execution_id}")


def pause(ctx: typer.Context, execution_id: ExecId) -> None:
    """Stop dispatching new nodes; running nodes finish. Undo with `spane resume`."""
    current, store = store_only(ctx)
    store.set_paused(execution_id, True)
    _say(current.quiet, f"paused {execution_id}")


def resume(ctx: typer.Context, execution_id: ExecId) -> None:
    """Dispatch again what is ready in a paused execution."""
    current, store, dispatcher = store_and_dispatcher(ctx)
    dispatcher.enqueue(store.set_paused(execution_id, False))
    _say(current.quiet, f"resumed {execution_id}")


def retry(ctx: typer.Context, execution_id: ExecId) -> None:
    """Re-run only the failed nodes of a failed execution (and what they blocked); succeeded
    nodes keep their outputs and attempts."""

    current, store, dispatcher = store_and_dispatcher(ctx)
    dispatches = store.retry_execution(execution_id)
    dispatcher.enqueue(dispatches)
    names = ", ".join(d.node_id for d in dispatches)
    _say(current.quiet, f"retrying {names} of {execution_id}")


def resubmit(
    ctx: typer.Context,
    execution_id: ExecId,
    inputs: Annotated[
        list[str] | None,
        typer.Option(
            "--input", "-i", help="Change one input: NAME=VALUE (repeatable).", metavar="K=V"
        ),
    ] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Wait until the new one ends.")] = False,
    watch: Annotated[bool, typer.Option("--watch", help="Show its progress until the end.")] = (
        False
    ),
    timeout: Annotated[
        str | None,
        typer.Option("--timeout", help="Stop waiting after this long (exit 124).", metavar="DUR"),
    ] = None,
) -> None:
    """Start a new execution with the same workflow version and input (with -i overrides,
    checked against the workflow's inputs); prints the new id. --wait and --watch exit as
    `spane run` does."""
    from spane_cli.cli.run_cmd import EXIT_BY_STATUS, announce, follow_submitted
    from spane_cli.engine.submit import resolve_inputs
    from spane_cli.errors import ExitCode, UsageError
    from spane_cli.workflow.durations import DurationError, parse_duration

    try:
        wait_limit = parse_duration(timeout) if timeout else None
    except DurationError as exc:
        raise UsageError(f"--timeout: {exc}") from None
    from spane_cli.workflow.input_values import InputTextError, typed_pairs

    current, store, dispatcher = store_and_dispatcher(ctx)
    old = store.require_execution(execution_id)
    workflow = store.versions.get(old.version_id).workflow
    try:  # as `run -i` reads them: text as typed for a string input, JSON for the others
        overrides = typed_pairs(inputs or [], workflow.inputs)
    except InputTextError as exc:
        raise UsageError(str(exc)) from None
    given = resolve_inputs(workflow, {**(old.input or {}), **overrides})
    new_id, created, dispatches = store.create_execution(old.version_id, given)
    dispatcher.enqueue(dispatches)
    announce(new_id, created, current, document_follows=wait or watch)
    status = follow_submitted(store, new_id, current, wait, watch, wait_limit)
    if status is not None:
        raise typer.Exit(int(EXIT_BY_STATUS.get(status, ExitCode.FAILED)))
