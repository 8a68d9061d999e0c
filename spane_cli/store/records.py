"""The values the store hands out and takes in: jobs to dispatch, claims, reports, and the
fixed fields of an execution. Plain dataclasses; nothing here touches the database."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from spane_cli.states import OutcomeKind
from spane_cli.store.versions import LoadedVersion
from spane_cli.text import storable
from spane_cli.workflow.model import Node

MAX_DEPTH = 10  # sub-workflows nest at most this deep
MAX_LOST = 3  # a node whose worker died this many times in a row fails with `worker lost`


@dataclass(frozen=True)
class Dispatch:
    """One job to put on a queue: look at node `node_id` of `execution_id`, attempt `attempt`."""

    execution_id: str
    node_id: str
    attempt: int
    queue: str
    item: int | None = None  # a foreach item's index; None for the node itself
    # The node's priority: which band of its queue the job waits in (engine/dispatch.py).
    priority: int = 0


def dispatch_of(execution_id: str, node: Node, attempt: int, item: int | None = None) -> Dispatch:
    """The job of a node of the model: its queue and priority come from the node."""
    return Dispatch(execution_id, node.id, attempt, node.queue, item, node.priority)


@dataclass
class ClaimedNode:
    """A node attempt (or one foreach item of it) that a worker now owns, with what it reads."""

    execution_id: str
    node_id: str
    attempt: int
    version: LoadedVersion
    workflow_input: Any
    parent_outputs: dict[str, Any]
    timeout_at: float | None
    item: int | None = None  # a foreach item's index, when this claim is for one item
    item_value: Any = None
    # The worker (one process life) that holds the claim: its report counts only while the
    # row still names it, so a worker that comes back after its node was taken over is ignored.
    worker: str | None = None
    schedule: tuple[str, float] | None = None  # (schedule name, fire time) that made it
    queued_at: float | None = None  # when its job was queued: the dispatch latency's start
    # An open circuit breaker (on_open: fail) refused the run: it fails with this error unrun.
    refused: str | None = None


@dataclass
class Report:
    """What a worker reports for a claimed node: the node result, in the store's terms."""

    kind: OutcomeKind | str
    output: Any = None
    error: str | None = None
    logs: str = ""
    wait_until: float | None = None
    chosen: list[str] | None = None
    child_reference: str | None = None
    child_input: Any = None
    # What `retry.when` looks at besides the error (never stored): a shell command's exit
    # code, an http response's status.
    exit_code: int | None = None
    http_status: int | None = None
    # The run never reached its host (a circuit breaker refused it): not counted by one.
    refused: bool = False

    def __post_init__(self) -> None:
        # Every report's text is written as is (outputs and inputs go through JSON, which
        # escapes NUL): made storable here, whoever built the report.
        self.logs = storable(self.logs)
        if self.error is not None:
            self.error = storable(self.error)


@dataclass(frozen=True)
class ExecutionInfo:
    """The fields of an execution that never change after it is created. (Its deadline is
    not one of them: a retry gives the execution a fresh one.)"""

    id: str
    version_id: int
    workflow: str
    input: Any
    depth: int
    parent_id: str | None
    parent_node_id: str | None
    schedule: tuple[str, float] | None = None  # (schedule name, fire time) that made it


# (execution id, node id or None, event type, data): an event waiting to be written.
EventRow = tuple[str, str | None, str, dict[str, Any] | None]


class StaleReport(Exception):
    """Raised inside a transaction to roll it back when a guarded update found nothing."""
