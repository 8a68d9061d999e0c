"""`delay`: parks the node until a time; the worker is free meanwhile."""

from __future__ import annotations

import time
from typing import Any, ClassVar

from spane_cli.nodes.base import NodeContext, NodeResult, Outcome
from spane_cli.timeutil import parse_iso
from spane_cli.workflow.durations import DurationError, parse_duration
from spane_cli.workflow.expressions import ExpressionError
from spane_cli.workflow.node_configs import DELAY


class DelayNode:
    type_name: ClassVar[str] = "delay"
    config_schema: ClassVar[dict[str, Any]] = DELAY

    def run(self, context: NodeContext) -> NodeResult:
        try:
            if "duration" in context.config:
                seconds = parse_duration(context.render(context.config["duration"]))
                wait_until = time.time() + seconds
            else:
                wait_until = parse_iso(str(context.render(context.config["until"])))
        except (DurationError, ExpressionError, ValueError) as exc:
            return NodeResult.failed(context.mask(f"config: {exc}"))
        return NodeResult(Outcome.WAIT, output=context.input, wait_until=wait_until)
