"""The ASGI application of `spane serve`: `create_app(settings)`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from spane_cli import __version__
from spane_cli.api import problems, streams, webhooks
from spane_cli.api.body_limit import BodyLimit
from spane_cli.api.context import Services
from spane_cli.api.routes import dead_letters, executions, health, workflows
from spane_cli.config import Settings

API_PREFIX = "/v1"
DESCRIPTION = """\
The operations of the `spane` command line over HTTP: start runs, follow and steer
executions, dead letters, registered workflows. Every `/v1` route needs a bearer token
(`spane token create NAME --scope read|run|admin`) but the webhooks, `/v1/hooks/{workflow}`,
which are signed instead; `/healthz`, `/readyz` and this document need none. Errors are
RFC 9457 `application/problem+json`. See docs/api.md.
"""


def create_app(settings: Settings) -> FastAPI:
    services = Services(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        services.close()

    app = FastAPI(
        title="spane",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    app.state.services = services
    app.add_middleware(BodyLimit)
    problems.install(app)
    app.include_router(health.router)
    app.include_router(executions.router, prefix=API_PREFIX)
    app.include_router(dead_letters.router, prefix=API_PREFIX)
    app.include_router(workflows.router, prefix=API_PREFIX)
    app.include_router(streams.router, prefix=API_PREFIX)
    app.include_router(webhooks.router, prefix=API_PREFIX)
    _document_problems(app)
    return app


def _document_problems(app: FastAPI) -> None:
    """The Problem schema joins the document's components, for the routes' error answers."""
    default_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = default_openapi()
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        for model in (problems.Problem, problems.FileProblem, problems.InvalidParam):
            schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
            for name, definition in schema.pop("$defs", {}).items():
                schemas.setdefault(name, definition)
            schemas[model.__name__] = schema
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]


def from_environment() -> FastAPI:
    """The app of a `spane serve` process: its settings from SPANE_DATABASE_URL and
    SPANE_REDIS_URL, which `spane serve` sets from its own options."""
    import logging
    import os

    from spane_cli.config import DEFAULT_REDIS_URL

    logging.basicConfig(level=logging.INFO, format="%(levelname)s:  %(name)s %(message)s")
    return create_app(
        Settings(
            db_url=os.environ.get("SPANE_DATABASE_URL") or None,
            redis_url=os.environ.get("SPANE_REDIS_URL") or DEFAULT_REDIS_URL,
        )
    )
