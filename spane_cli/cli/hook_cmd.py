"""`spane hook create|list|rm`: webhooks that start runs of registered workflows."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from spane_cli.cli.services import store_only

hook_app = typer.Typer(
    help="Webhooks of `spane serve`: POST /v1/hooks/WORKFLOW with a JSON body signed by "
    "the hook's secret (X-Hub-Signature-256: sha256=HMAC-SHA256 of the body, as GitHub "
    "signs) starts a run of the workflow with the body as its inputs. The secret is never "
    "stored: it is derived from a salt under the server key (SPANE_SECRET_KEY, or "
    "SPANE_HOME/secret.key), which `spane serve` must share.",
    no_args_is_help=True,
)

WorkflowArgument = Annotated[
    str, typer.Argument(help="A registered workflow's name.", metavar="WORKFLOW")
]
DEFAULT_API_URL = "http://127.0.0.1:8080"
API_URL_VARIABLE = "SPANE_API_URL"


@hook_app.command("create")
def create(
    ctx: typer.Context,
    workflow: WorkflowArgument,
    url: Annotated[
        str | None,
        typer.Option(
            "--url",
            help=f"The server's address in the printed URL [env: {API_URL_VARIABLE}; "
            f"default: {DEFAULT_API_URL}].",
            metavar="URL",
        ),
    ] = None,
) -> None:
    """Make the workflow's hook and print its URL and secret. The secret is shown only now;
    running this again gives the hook a new secret (the old one stops working). Exit 4 when
    no version of the workflow is registered. -o json prints {workflow, url, secret}."""
    from urllib.parse import quote

    from spane_cli.cli.render import print_data
    from spane_cli.engine import hook_secrets
    from spane_cli.errors import NotFound
    from spane_cli.store.versions import latest_version_id

    current, store = store_only(ctx)
    if latest_version_id(workflow) is None:
        raise NotFound(f"no registered workflow named {workflow!r} (spane run registers it)")
    key = hook_secrets.server_key()
    salt = hook_secrets.new_salt()
    store.save_hook(workflow, salt)
    base = (url or os.environ.get(API_URL_VARIABLE) or DEFAULT_API_URL).rstrip("/")
    hook_url = f"{base}/v1/hooks/{quote(workflow, safe='')}"
    secret = hook_secrets.hook_secret(key, workflow, salt)
    if print_data({"workflow": workflow, "url": hook_url, "secret": secret}, current.output):
        return
    sys.stdout.write(f"url: {hook_url}\nsecret: {secret}\n")
    if not current.quiet:
        sys.stderr.write(
            f"spane: hook of {workflow!r} created; the secret is shown only now. Sign each "
            "body: X-Hub-Signature-256: sha256=HMAC-SHA256(secret, body)\n"
        )


@hook_app.command("list")
def list_hooks(ctx: typer.Context) -> None:
    """Every hook: workflow, created, deliveries taken, the last one (never the secret).
    -o json prints a bare array; -o name (or -q) bare workflow names."""
    from rich.table import Table

    from spane_cli.cli.render import print_data
    from spane_cli.cli.tables import console, print_names
    from spane_cli.config import OutputFormat
    from spane_cli.store import hooks
    from spane_cli.timeutil import iso

    current, _ = store_only(ctx)
    found = hooks.hooks()
    if current.quiet or current.output is OutputFormat.NAME:
        print_names([hook.workflow for hook in found])
        return
    views = [
        {
            "workflow": hook.workflow,
            "created_at": iso(hook.created_at),
            "deliveries": hook.deliveries,
            "last_delivery_at": iso(hook.last_delivery_at),
        }
        for hook in found
    ]
    if print_data(views, current.output):
        return
    table = Table(show_edge=False)
    for column in ("workflow", "created", "deliveries", "last delivery"):
        table.add_column(column, no_wrap=True)
    for view in views:
        table.add_row(
            str(view["workflow"]),
            str(view["created_at"]),
            str(view["deliveries"]),
            str(view["last_delivery_at"] or "-"),
        )
    console().print(table)


@hook_app.command("rm")
def remove(ctx: typer.Context, workflow: WorkflowArgument) -> None:
    """Remove the workflow's hook: its requests are refused from now on (exit 4 when it has
    none). Past deliveries are kept, so an old request stays a replay."""
    from spane_cli.errors import NotFound

    current, store = store_only(ctx)
    if not store.remove_hook(workflow):
        raise NotFound(f"workflow {workflow!r} has no hook")
    if not current.quiet:
        sys.stderr.write(f"spane: hook of {workflow!r} removed\n")
