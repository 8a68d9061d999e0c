"""The bodies of the API as pydantic models: the OpenAPI document's schemas.

Responses mirror the SPEC's JSON shapes (`spane get -o json` and friends) field for field,
as `spane_cli.store.views` builds them; these models only describe them.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from spane_cli.states import ExecutionStatus, NodeStatus
from spane_cli.workflow.schema import WORKFLOW_NAME_PATTERN

MAX_LIMIT = 1000
MAX_ID = 2**53  # exact in JSON numbers of every client


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ItemsProgress(BaseModel):
    total: int
    done: int


class NodeView(BaseModel):
    status: NodeStatus
    attempts: int
    output: Any = None
    error: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    items: ItemsProgress | None = Field(default=None, description="A foreach node's progress")
    priority: int | None = Field(default=None, description="Shown when the node has one")


class ExecutionSummary(BaseModel):
    """An execution without its nodes (as `spane list -o json` shows each)."""

    id: str
    workflow: str
    version: int
    status: ExecutionStatus
    input: Any = None
    output: Any = None
    error: str | None = None
    created_at: str | None
    started_at: str | None = None
    finished_at: str | None = None
    parent_id: str | None = None
    schedule: str | None = None
    fire_time: str | None = None


class ExecutionView(ExecutionSummary):
    """An execution with every node, the shape of `spane get -o json`."""

    nodes: dict[str, NodeView]


class ExecutionPage(BaseModel):
    items: list[ExecutionSummary]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null on the last page"
    )


def _inputs() -> Any:
    return Field(default_factory=dict, description="The workflow's inputs, by name")


class RunRegistered(_Strict):
    """Run a registered workflow: its newest version, or `version`."""

    workflow: str = Field(max_length=64, pattern=WORKFLOW_NAME_PATTERN, examples=["etl"])
    version: int | None = Field(default=None, ge=1, le=2**31 - 1)
    input: dict[str, Any] = _inputs()


class RunDocument(_Strict):
    """Register and run an uploaded workflow document, validated as `spane validate` does
    (its problems in a 422, as FILE:LINE:COL with `filename`). It may name registered
    workflows as sub-workflows, not files."""

    document: str = Field(max_length=2 * 1024 * 1024, description="The workflow file's text")
    filename: str | None = Field(
        default=None,
        max_length=255,
        description="The name its problems are reported under; workflow.yaml when left out",
    )
    input: dict[str, Any] = _inputs()


RunRequest = RunRegistered | RunDocument


class ResubmitRequest(_Strict):
    input: dict[str, Any] = Field(
        default_factory=dict, description="Inputs changed from the old execution's"
    )


class Created(BaseModel):
    """A run started: its id, and whether it is new (false: the idempotency key matched)."""

    id: str
    created: bool


class Changed(BaseModel):
    id: str
    status: ExecutionStatus


class Retried(BaseModel):
    id: str
    nodes: list[str] = Field(description="The node ids queued again")


class DeadLetterView(BaseModel):
    id: int
    execution_id: str
    workflow: str
    node_id: str
    error: str | None = None
    attempts: int
    created_at: str | None
    replayed_at: str | None = None


class DeadLetterDetail(DeadLetterView):
    input: Any = None
    logs_tail: str = Field(description="The last 4000 characters of the node's logs")


class DeadLetterPage(BaseModel):
    items: list[DeadLetterView]
    next_cursor: str | None


class Replayed(BaseModel):
    id: int
    execution_id: str
    nodes: list[str]


class PurgeIds(_Strict):
    ids: list[Annotated[int, Field(ge=1, le=MAX_ID)]] = Field(min_length=1, max_length=MAX_LIMIT)


class PurgeAll(_Strict):
    all: Literal[True]


PurgeRequest = PurgeIds | PurgeAll


class Purged(BaseModel):
    purged: int


class WorkflowSummary(BaseModel):
    name: str
    versions: int
    latest_version: int
    registered_at: str | None


class WorkflowPage(BaseModel):
    items: list[WorkflowSummary]
    next_cursor: str | None


class VersionView(BaseModel):
    name: str
    version: int
    content_hash: str
    registered_at: str | None


class VersionDetail(VersionView):
    document: dict[str, Any] = Field(description="The workflow as registered (parsed YAML)")
    refs: dict[str, int] = Field(description="Sub-workflow references -> version ids")


class Health(BaseModel):
    status: str = Field(examples=["ok"])


class Readiness(BaseModel):
    status: str = Field(examples=["ready"])
    database: str
    redis: str
