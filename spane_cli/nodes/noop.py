"""`noop`: passes its input through."""

from __future__ import annotations

from typing import Any, ClassVar

from spane_cli.nodes.base import NodeContext, NodeResult
from spane_cli.workflow.node_configs import NOOP


class NoopNode:
    type_name: ClassVar[str] = "noop"
    config_schema: ClassVar[dict[str, Any]] = NOOP

    def run(self, context: NodeContext) -> NodeResult:
        return NodeResult.ok(context.input)
