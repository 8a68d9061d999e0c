"""Health (the process answers) and readiness (the database and Redis answer): no token, so
a load balancer can probe them; neither says more than ok or unreachable."""

from __future__ import annotations

from fastapi import APIRouter, Request

from spane_cli.api import context
from spane_cli.api.problems import ApiProblem, responses
from spane_cli.api.schemas import Health, Readiness
from spane_cli.errors import SpaneError

router = APIRouter(tags=["health"])


@router.get("/healthz", operation_id="health", summary="The server answers", response_model=Health)
async def health() -> Health:
    return Health(status="ok")


@router.get(
    "/readyz",
    operation_id="readiness",
    summary="The database and Redis answer",
    response_model=Readiness,
    responses=responses(503),
)
def readiness(request: Request) -> Readiness:
    from redis.exceptions import RedisError

    from spane_cli.store.db import check_reachable

    services = context.services(request)
    database = redis = "ok"
    try:
        store = services.store()
        check_reachable(store.database, "the database")
    except SpaneError:
        database = "unreachable"
    try:
        services.dispatcher().connection.ping()
    except (SpaneError, RedisError, OSError):
        redis = "unreachable"
    if database != "ok" or redis != "ok":
        # Which one, and no more: the URLs and the drivers' messages stay in the server.
        raise ApiProblem(503, "unreachable", f"database {database}, redis {redis}")
    return Readiness(status="ready", database=database, redis=redis)
