"""`workflow`: asks the engine to start a sub-workflow; its output becomes ours."""

from __future__ import annotations

from typing import Any, ClassVar

from spane_cli.nodes.base import ChildRequest, NodeContext, NodeResult
from spane_cli.nodes.common import mask_value
from spane_cli.states import OutcomeKind
from spane_cli.workflow.expressions import ExpressionError
from spane_cli.workflow.model import thaw
from spane_cli.workflow.node_configs import WORKFLOW


class WorkflowNode:
    type_name: ClassVar[str] = "workflow"
    config_schema: ClassVar[dict[str, Any]] = WORKFLOW

    def run(self, context: NodeContext) -> NodeResult:
        try:
            child_input = context.render(thaw(context.config.get("input") or {}))
        except ExpressionError as exc:
            return NodeResult.failed(context.mask(f"config.input: {exc}"))
        reference = str(context.config["workflow"])
        # The child's input is stored with its execution; secrets stay out of it (the child's
        # nodes can read `secrets.*` themselves).
        child = ChildRequest(reference, mask_value(context, child_input))
        return NodeResult(OutcomeKind.CHILD, child=child)
