"""`spane serve`: the HTTP API (spane_cli/api) under uvicorn."""

from __future__ import annotations

import os
from typing import Annotated

import typer

HELP = (
    "Serve the HTTP API: the operations of this command line under /v1, its OpenAPI document "
    "at /openapi.json, /healthz and /readyz. Every /v1 route needs a bearer token (spane token "
    "create) but the webhooks /v1/hooks/WORKFLOW, signed instead (spane hook create). "
    "Stateless: run several behind a load balancer, all on the same database and "
    "Redis. Put TLS in front of it (docs/api.md). Stops cleanly on SIGTERM or Ctrl-C."
)

# What the app factory reads in each server process (one, or each of --workers).
_DATABASE_VAR = "SPANE_DATABASE_URL"
_REDIS_VAR = "SPANE_REDIS_URL"


def serve(
    ctx: typer.Context,
    host: Annotated[
        str, typer.Option("--host", help="The address to listen on.", metavar="ADDR")
    ] = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", help="The port to listen on.", min=0, max=65535)
    ] = 8080,
    workers: Annotated[
        int, typer.Option("--workers", help="Server processes on this port.", min=1, max=64)
    ] = 1,
    forwarded_allow_ips: Annotated[
        str | None,
        typer.Option(
            "--forwarded-allow-ips",
            help=(
                "Proxies whose X-Forwarded-For is trusted (comma-separated, or *): the client "
                "address then comes from it (failed tokens are slowed down per address)."
            ),
            metavar="IPS",
        ),
    ] = None,
    root_path: Annotated[
        str,
        typer.Option("--root-path", help="The path prefix a proxy serves the API under."),
    ] = "",
    access_log: Annotated[
        bool, typer.Option("--access-log/--no-access-log", help="Log one line per request.")
    ] = True,
) -> None:
    import uvicorn

    from spane_cli.cli.services import settings
    from spane_cli.engine.connections import open_redis, open_store

    current = settings(ctx)
    # Checked (and migrated) before listening: a server that cannot reach either exits 3
    # at once rather than answering 503 to everything.
    open_redis(current.redis_url)
    open_store(current).close()
    if current.db_url:
        os.environ[_DATABASE_VAR] = current.db_url
    os.environ[_REDIS_VAR] = current.redis_url
    uvicorn.run(
        "spane_cli.api.app:from_environment",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        proxy_headers=forwarded_allow_ips is not None,
        forwarded_allow_ips=forwarded_allow_ips,
        root_path=root_path,
        access_log=access_log,
        log_level="debug" if current.debug else "info",
        server_header=False,
        timeout_graceful_shutdown=10,
    )
