"""The contract between the worker and a node type.

A node type is a class with a `config_schema` (JSON Schema of its `config`) and a
`run(context) -> NodeResult` method. The worker renders nothing itself: the executor renders
the templates of its own config with `context.render`, because only it knows which fields are
templates (e.g. `branch` evaluates `cases[].when` as bare expressions).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from spane_cli.states import OutcomeKind
from spane_cli.text import mask_secrets
from spane_cli.workflow.expressions import evaluate, render_value


@dataclass(frozen=True)
class ChildRequest:
    """What a `workflow` node asks the engine to start."""

    reference: str  # the `workflow:` value, as written (resolved through the version's refs)
    input: Any


@dataclass
class NodeResult:
    outcome: OutcomeKind  # succeeded, failed, wait or child
    output: Any = None
    error: str | None = None  # one line first, details after
    logs: str = ""  # captured output kept for `spane logs` (already masked)
    wait_until: float | None = None
    child: ChildRequest | None = None
    chosen: list[str] | None = None  # branch: the children it chose
    # A failure's facts for `retry.when`: a command's exit code, an http response's status.
    exit_code: int | None = None
    http_status: int | None = None

    @classmethod
    def ok(cls, output: Any = None, logs: str = "") -> NodeResult:
        return cls(OutcomeKind.SUCCEEDED, output=output, logs=logs)

    @classmethod
    def failed(
        cls,
        error: str,
        logs: str = "",
        output: Any = None,
        *,
        exit_code: int | None = None,
        http_status: int | None = None,
    ) -> NodeResult:
        return cls(
            OutcomeKind.FAILED,
            output=output,
            error=error,
            logs=logs,
            exit_code=exit_code,
            http_status=http_status,
        )


@dataclass
class NodeContext:
    """Everything a node may look at. `scope` is the template namespace of SPEC §1."""

    execution_id: str
    workflow_name: str
    node_id: str
    attempt: int
    config: Mapping[str, Any]  # as written, templates not rendered
    input: Any  # this node's input (`parents` in templates)
    scope: Mapping[str, Any]  # input, nodes, parents, item, index, execution, workflow, secrets
    timeout: float | None = None  # seconds for this attempt, None = unlimited
    secrets: Mapping[str, str] = field(default_factory=dict)
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger("spane.node"))
    # Set by the worker when the execution is cancelled; long-running executors poll it.
    cancel_requested: Any = None  # Callable[[], bool] | None
    # Set by the worker for node types that stream their output while they run: each piece
    # of output goes here (masked and stored by the worker) instead of into NodeResult.logs.
    log_stream: Any = None  # Callable[[str], None] | None

    def render(self, value: Any) -> Any:
        return render_value(value, self.scope)

    def evaluate(self, expression: str) -> Any:
        return evaluate(expression, self.scope)

    def mask(self, text: str) -> str:
        """Replace every secret value in `text` with ***."""
        return mask_secrets(text, self.secrets.values())


class NodeType(Protocol):
    type_name: ClassVar[str]
    config_schema: ClassVar[dict[str, Any]]

    def run(self, context: NodeContext) -> NodeResult: ...
