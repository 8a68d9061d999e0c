"""`fail`: fails with a message (for tests and guards)."""

from __future__ import annotations

from typing import Any, ClassVar

from spane_cli.nodes.base import NodeContext, NodeResult
from spane_cli.workflow.expressions import ExpressionError
from spane_cli.workflow.node_configs import FAIL


class FailNode:
    type_name: ClassVar[str] = "fail"
    config_schema: ClassVar[dict[str, Any]] = FAIL

    def run(self, context: NodeContext) -> NodeResult:
        try:
            message = context.render(context.config.get("message") or "failed by a fail node")
        except ExpressionError as exc:
            return NodeResult.failed(context.mask(f"config.message: {exc}"))
        return NodeResult.failed(context.mask(str(message)))
