"""`spane cancel|pause|resume|retry|resubmit EXEC_ID`."""

from __future__ import annotations

import sys

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


def resubmit(ctx: typer.Context, execution_id: ExecId) -> None:
    """Start a new execution with the same workflow version and input; prints the new id."""
    from spane_cli.cli.run_cmd import announce

    current, store, dispatcher = store_and_dispatcher(ctx)
    old = store.require_execution(execution_id)
    new_id, created, dispatches = store.create_execution(old.version_id, old.input)
    dispatcher.enqueue(dispatches)
    announce(new_id, created, current)
