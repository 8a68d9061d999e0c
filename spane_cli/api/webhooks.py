"""Webhook triggers: a route per workflow that starts a run from a signed JSON body.

`POST /v1/hooks/{workflow}` needs no bearer token: the signature is the credential. The body
is signed as GitHub signs it (`X-Hub-Signature-256: sha256=HEX`, HMAC-SHA256 of the raw body
under the hook's secret, engine/hook_secrets.py). A delivery id (`X-Spane-Delivery` or
`X-GitHub-Delivery`) makes a redelivery return the execution the first delivery started; the
same signature under another delivery id, or under none twice, is a replay and is refused.
Nothing is started unless the signature verifies.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from spane_cli.api import context
from spane_cli.api.problems import MEDIA_TYPE, ApiProblem, responses
from spane_cli.engine import hook_secrets
from spane_cli.errors import NotFound, UsageError
from spane_cli.workflow.schema import WORKFLOW_NAME_PATTERN

router = APIRouter(tags=["webhooks"])
log = logging.getLogger("spane.api.hooks")

# Bodies larger than this are refused with 413 before they are read to the end.
DEFAULT_MAX_BODY = 1024 * 1024
MAX_BODY_VARIABLE = "SPANE_HOOK_MAX_BYTES"
MAX_DELIVERY_ID = 128  # the column's size
# Printable ASCII, not starting or ending with a space (a header's value is trimmed).
_DELIVERY_PATTERN = r"^[!-~]([ -~]*[!-~])?$"


def max_body() -> int:
    given = os.environ.get(MAX_BODY_VARIABLE, "").strip()
    return int(given) if given.isdigit() and int(given) > 0 else DEFAULT_MAX_BODY


class HookRun(BaseModel):
    """The execution a delivery started (or, for a redelivery, started before)."""

    id: str = Field(description="The execution's id")
    created: bool = Field(description="False for a redelivery: the first delivery's execution")
    workflow: str
    delivery: str | None = Field(description="The delivery id the request gave, if any")


def _refused(detail: str) -> ApiProblem:
    return ApiProblem(401, "unauthenticated", detail)


async def _body(request: Request, limit: int) -> bytes:
    """The raw body (what the signature covers), refused with 413 past `limit` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise ApiProblem(413, "too-large", f"the body is larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiProblem(413, "too-large", f"the body is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _delivery_id(spane: str | None, github: str | None) -> str | None:
    given = spane if spane is not None else github
    if given is None:
        return None
    given = given.strip()
    if not given or len(given) > MAX_DELIVERY_ID or not given.isprintable():
        raise UsageError(f"the delivery id must be 1 to {MAX_DELIVERY_ID} printable characters")
    return given


def _input_of(body: bytes) -> dict[str, Any]:
    if not body.strip():
        return {}
    try:
        value = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise UsageError(f"the body is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise UsageError("the body must be a JSON object: its keys are the run's inputs")
    return value


def deliver(
    services: context.Services,
    workflow: str,
    body: bytes,
    signature: str | None,
    delivery_id: str | None,
) -> tuple[str, bool]:
    """Verify, then start (or find) the delivery's execution: (execution id, created?)."""
    from spane_cli.engine.submit import resolve_inputs
    from spane_cli.store import hooks
    from spane_cli.store.versions import latest_version_id

    store = services.store()
    if not signature:
        raise _refused("the X-Hub-Signature-256 header is missing: sign the body with the secret")
    salt = hooks.hook_salt(workflow)
    # A workflow without a hook answers as a wrong signature does, after the same work: the
    # route tells nobody which workflows have hooks.
    secret = hook_secrets.hook_secret(hook_secrets.server_key(), workflow, salt or "")
    if not hook_secrets.verifies(secret, body, signature) or salt is None:
        raise _refused("the X-Hub-Signature-256 signature does not match this hook's secret")
    digest = hook_secrets.signature_digest(signature)
    past = hooks.past_delivery(workflow, digest, delivery_id)
    if past is not None:
        if past.signature_digest != digest:
            raise ApiProblem(
                409, "conflict", f"delivery {delivery_id!r} was already used for another body"
            )
        if delivery_id is None or past.delivery_id != delivery_id:
            raise _refused("this signature was used before: a replayed request is refused")
        return past.execution_id, False
    given = _input_of(body)
    version_id = latest_version_id(workflow)
    if version_id is None:
        raise NotFound(f"no registered workflow named {workflow!r}")
    inputs = resolve_inputs(store.versions.get(version_id).workflow, given)
    dispatcher = services.dispatcher()  # Redis first: nothing is written when it is down
    execution_id, created, dispatches = store.start_hook_delivery(
        workflow, version_id, inputs, delivery_id=delivery_id, signature_digest=digest
    )
    try:
        dispatcher.enqueue(dispatches)
    except Exception:  # the outbox rows are written: the workers' reconciler sends them
        log.warning("enqueueing the jobs of %s failed; the reconciler will", execution_id)
    return execution_id, created


def _hook_responses() -> dict[int | str, dict[str, Any]]:
    documented = responses(400, 401, 404, 409, 422, 503)
    documented[200] = {
        "description": "A redelivery: the execution it started before",
        "model": HookRun,
    }
    documented[413] = {
        "description": "The body is larger than the limit (SPANE_HOOK_MAX_BYTES, 1 MiB)",
        "content": {MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }
    return documented


@router.post(
    "/hooks/{workflow}",
    summary="Start a run of a workflow from a signed webhook",
    status_code=201,
    response_model=HookRun,
    responses=_hook_responses(),
    # The body is read raw (its signature is of its bytes): the document still says what it is.
    openapi_extra={
        "requestBody": {
            "required": False,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "description": "The run's inputs by name; empty is no inputs",
                    }
                }
            },
        }
    },
)
async def hook(
    request: Request,
    workflow: Annotated[
        str, Path(max_length=64, pattern=WORKFLOW_NAME_PATTERN, description="Its workflow")
    ],
    services: Annotated[context.Services, Depends(context.services)],
    x_hub_signature_256: Annotated[
        str | None,
        Header(max_length=200, description="sha256=HEX: HMAC-SHA256 of the raw body"),
    ] = None,
    x_spane_delivery: Annotated[
        str | None,
        Header(
            max_length=MAX_DELIVERY_ID,
            pattern=_DELIVERY_PATTERN,
            description="The delivery's id: a redelivery keeps it",
        ),
    ] = None,
    x_github_delivery: Annotated[
        str | None,
        Header(
            max_length=MAX_DELIVERY_ID,
            pattern=_DELIVERY_PATTERN,
            description="GitHub's delivery id, when X-Spane-Delivery is absent",
        ),
    ] = None,
) -> Any:
    """Starts a run of the newest registered version of `workflow`, with the JSON object of
    the body as its inputs (checked as `spane run -i` checks them). Made with `spane hook
    create WORKFLOW`, which prints the secret. No bearer token: the signature is the
    credential; a missing, wrong or replayed one is a 401 and starts nothing."""
    body = await _body(request, max_body())
    delivery_id = _delivery_id(x_spane_delivery, x_github_delivery)
    execution_id, created = await run_in_threadpool(
        deliver, services, workflow, body, x_hub_signature_256, delivery_id
    )
    answer = HookRun(id=execution_id, created=created, workflow=workflow, delivery=delivery_id)
    return JSONResponse(
        answer.model_dump(),
        status_code=201 if created else 200,
        headers={"Location": f"/v1/executions/{execution_id}"},
    )
