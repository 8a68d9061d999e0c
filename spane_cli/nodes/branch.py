"""`branch`: the first case whose `when` is true chooses the children that run."""

from __future__ import annotations

from typing import Any, ClassVar

from spane_cli.nodes.base import NodeContext, NodeResult
from spane_cli.states import OutcomeKind
from spane_cli.workflow.expressions import ExpressionError
from spane_cli.workflow.node_configs import BRANCH
from spane_cli.workflow.validate import bare_expression


class BranchNode:
    type_name: ClassVar[str] = "branch"
    config_schema: ClassVar[dict[str, Any]] = BRANCH

    def run(self, context: NodeContext) -> NodeResult:
        chosen: list[str] = list(context.config.get("default") or [])
        for index, case in enumerate(context.config.get("cases") or []):
            try:
                matched = context.evaluate(bare_expression(case["when"]))
            except ExpressionError as exc:
                return NodeResult.failed(context.mask(f"config.cases[{index}].when: {exc}"))
            if matched:
                chosen = list(case["next"])
                break
        return NodeResult(OutcomeKind.SUCCEEDED, output={"chosen": chosen}, chosen=chosen)
