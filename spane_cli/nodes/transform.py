"""`transform`: its output is the `output` mapping, evaluated."""

from __future__ import annotations

from typing import Any, ClassVar

from spane_cli.nodes.base import NodeContext, NodeResult
from spane_cli.nodes.common import mask_value
from spane_cli.workflow.expressions import ExpressionError
from spane_cli.workflow.model import thaw
from spane_cli.workflow.node_configs import TRANSFORM


class TransformNode:
    type_name: ClassVar[str] = "transform"
    config_schema: ClassVar[dict[str, Any]] = TRANSFORM

    def run(self, context: NodeContext) -> NodeResult:
        try:
            output = context.render(thaw(context.config.get("output")))
        except ExpressionError as exc:
            return NodeResult.failed(context.mask(f"config.output: {exc}"))
        # Outputs are stored; a secret referenced here must not reach the database.
        return NodeResult.ok(mask_value(context, output))
