"""`delay`: parks the node until a time; the worker is free meanwhile."""

from __future__ import annotations

import time
from typing import Any, ClassVar

from spane_cli.nodes.base import NodeContext, NodeResult
from spane_cli.states import OutcomeKind
from spane_cli.timeutil import parse_iso
from spane_cli.workflow.durations import DurationError, parse_duration
from spane_cli.workflow.expressions import ExpressionError
from spane_cli.workflow.node_configs import DELAY


class DelayNode:
    type_name: ClassVar[str] = "delay"
    config_schema: ClassVar[dict[str, Any]] = DELAY

    def run(self, context: NodeContext) -> NodeResult:
        field = "duration" if "duration" in context.config else "until"
        try:
            value = context.render(context.config[field])
            if field == "duration":
                wait_until = time.time() + parse_duration(value)
            else:
                wait_until = parse_iso(str(value))
        except (DurationError, ExpressionError, ValueError) as exc:
            return NodeResult.failed(context.mask(f"config.{field}: {exc}"))
        # A time in the past is not an error: the engine completes the node at once.
        return NodeResult(OutcomeKind.WAIT, output=context.input, wait_until=wait_until)
