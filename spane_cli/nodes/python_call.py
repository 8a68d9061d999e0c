"""`python`: calls `function: "pkg.mod:callable"` with a PythonContext; returns JSON-able data.

The function runs in the worker's own thread, so it cannot be interrupted: a long function
should poll `ctx.cancel_requested()`. Its exceptions and log records are captured into the
node's error and logs, never printed on the worker's stderr.
"""

from __future__ import annotations

import importlib
import json
import logging
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from spane_cli.nodes.base import NodeContext, NodeResult
from spane_cli.nodes.common import mask_value
from spane_cli.nodes.output_capture import captured_output
from spane_cli.text import first_line
from spane_cli.workflow.expressions import ExpressionError
from spane_cli.workflow.model import thaw
from spane_cli.workflow.node_configs import PYTHON

_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@dataclass
class PythonContext:
    """The one argument a `python` node's function receives."""

    input: Any
    parents: Any  # the same as `input`, under the name templates use
    execution_id: str
    node_id: str
    attempt: int
    workflow_name: str
    config: dict[str, Any]  # the node's `kwargs`, rendered
    logger: logging.Logger  # records end up in the node's logs (`spane logs`)
    secrets: Mapping[str, str]
    _cancel_requested: Callable[[], bool] | None = field(default=None, repr=False)

    def cancel_requested(self) -> bool:
        """True once the execution was cancelled; long functions should return early."""
        return bool(self._cancel_requested and self._cancel_requested())


class _ListHandler(logging.Handler):
    """Keeps the formatted records, or hands each to `stream` as it is emitted."""

    def __init__(self, stream: Callable[[str], None] | None = None) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.stream = stream
        self.setFormatter(logging.Formatter(_LOG_FORMAT))

    def emit(self, record: logging.LogRecord) -> None:
        line = self.format(record)
        if self.stream is not None:
            self.stream(line + "\n")
        else:
            self.lines.append(line)


def _capturing_logger(
    name: str, stream: Callable[[str], None] | None = None
) -> tuple[logging.Logger, _ListHandler]:
    """A logger outside the logging tree: its records reach only our handler, so nothing
    goes to the worker's handlers or stderr, and foreach items running in parallel threads
    each get their own. Not registered with logging.getLogger, so it does not leak."""
    logger = logging.Logger(name, logging.DEBUG)
    logger.propagate = False
    handler = _ListHandler(stream)
    logger.addHandler(handler)
    return logger, handler


def _load(reference: str) -> Callable[[PythonContext], Any]:
    module_name, _, attribute = reference.partition(":")
    module = importlib.import_module(module_name)
    function = getattr(module, attribute)
    if not callable(function):
        raise TypeError(f"{attribute} is not callable ({type(function).__name__})")
    return function


def _traceback_without_us(exc: BaseException) -> str:
    """The traceback from the user's function down; our calling frame is noise."""
    tb = exc.__traceback__.tb_next if exc.__traceback__ is not None else None
    return "".join(traceback.format_exception(type(exc), exc, tb))


def _exception_line(exc: BaseException) -> str:
    message = first_line(str(exc))
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def _add_printed(captured: _ListHandler, printed: str) -> None:
    """print() output goes before the logger's lines: it cannot be interleaved exactly."""
    if printed:
        captured.lines[:0] = printed.rstrip("\n").splitlines()


class PythonNode:
    type_name: ClassVar[str] = "python"
    config_schema: ClassVar[dict[str, Any]] = PYTHON

    def run(self, context: NodeContext) -> NodeResult:
        reference = str(context.config["function"])
        try:
            kwargs = context.render(thaw(context.config.get("kwargs") or {}))
        except ExpressionError as exc:
            return NodeResult.failed(context.mask(f"config.kwargs: {exc}"))
        try:
            function = _load(reference)
        except Exception as exc:
            details = context.mask(traceback.format_exc())
            error = f"cannot load python function {reference!r}: {_exception_line(exc)}"
            return NodeResult.failed(f"{context.mask(error)}\n{details}")

        # Streamed: print() and log records go out in the order they happen, as they happen.
        stream = context.log_stream
        logger, captured = _capturing_logger(f"spane.node.{context.node_id}", stream)
        python_context = PythonContext(
            input=context.input,
            parents=context.input,
            execution_id=context.execution_id,
            node_id=context.node_id,
            attempt=context.attempt,
            workflow_name=context.workflow_name,
            config=kwargs,
            logger=logger,
            secrets=context.secrets,
            _cancel_requested=context.cancel_requested,
        )
        with captured_output(stream) as printed:
            try:
                result = function(python_context)
            except (Exception, SystemExit) as exc:  # sys.exit() must not end the worker
                details = context.mask(_traceback_without_us(exc))
                error = f"{context.mask(_exception_line(exc))}\n{details}"
                if stream is not None:
                    stream(details)
                    return NodeResult.failed(error)
                _add_printed(captured, printed.getvalue())
                captured.lines.append(details.rstrip("\n"))
                logs = context.mask("\n".join(captured.lines) + "\n")
                return NodeResult.failed(error, logs)
        _add_printed(captured, printed.getvalue())
        logs = context.mask("\n".join(captured.lines) + "\n") if captured.lines else ""

        try:
            # allow_nan=False: NaN is not JSON, and PostgreSQL's jsonb refuses it.
            json.dumps(result, allow_nan=False)
        except (TypeError, ValueError) as exc:
            error = f"{reference} returned a value that is not JSON-serializable: {exc}"
            return NodeResult.failed(context.mask(error), logs)
        return NodeResult.ok(mask_value(context, result), logs)
