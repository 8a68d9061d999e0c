"""`python`: calls `function: "pkg.mod:callable"`; returns JSON-able data.

The call convention (docs/python-nodes.md): the rendered `kwargs` are the function's keyword
arguments, and a parameter named `context` or `ctx` (or annotated `PythonContext`, whatever its
name) receives the PythonContext; a function that asks for neither is called with `kwargs` alone.
An `async def` function is run to its end with asyncio.run.
Arguments that do not fit the signature fail the node before the call, naming the function.

The function runs in the worker's own thread, under the node's `timeout`; a long function
should poll `context.cancel_requested()`. Its exceptions and log records are captured into the
node's error and logs, never printed on the worker's stderr.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
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
    """What a `python` node's function receives in its `context` parameter."""

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


# `ctx` too: the name functions written for the one-argument convention of old mostly use.
CONTEXT_PARAMETERS = ("context", "ctx")


def _load(reference: str) -> Callable[..., Any]:
    module_name, _, attribute = reference.partition(":")
    module = importlib.import_module(module_name)
    function = getattr(module, attribute)
    if not callable(function):
        raise TypeError(f"{attribute} is not callable ({type(function).__name__})")
    return function


def _context_parameter(signature: inspect.Signature | None) -> str | None:
    """The parameter that asks for the context: one annotated PythonContext (the class, or
    its name as a string annotation), else one named `context` or `ctx`."""
    if signature is None:
        return None
    named = [
        parameter
        for parameter in signature.parameters.values()
        if parameter.kind not in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD)
    ]
    for parameter in named:
        annotation = parameter.annotation
        by_name = isinstance(annotation, str) and annotation.rsplit(".", 1)[-1] == "PythonContext"
        if annotation is PythonContext or by_name:
            return parameter.name
    for parameter in named:
        if parameter.name in CONTEXT_PARAMETERS:
            return parameter.name
    return None


def _signature(function: Callable[..., Any]) -> inspect.Signature | None:
    try:
        return inspect.signature(function)
    except (TypeError, ValueError):  # some builtins have none: called with kwargs alone
        return None


def _arguments(
    reference: str,
    signature: inspect.Signature | None,
    kwargs: Any,
    make_context: Callable[[], PythonContext],
) -> dict[str, Any]:
    """The keyword arguments of the call; ValueError (one line) when they do not fit."""
    if not isinstance(kwargs, dict):
        raise ValueError(f"config.kwargs must render to a mapping, not {type(kwargs).__name__}")
    arguments = dict(kwargs)
    wanted = _context_parameter(signature)
    if wanted is not None:
        if wanted in arguments:
            raise ValueError(
                f"config.kwargs holds {wanted!r}, the parameter where {reference} takes the "
                "context object"
            )
        arguments[wanted] = make_context()
    if signature is not None:
        try:
            signature.bind(**arguments)
        except TypeError as exc:
            shown = f"{reference}{signature}"
            raise ValueError(f"config.kwargs do not fit {shown}: {exc}") from None
    return arguments


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
            if (
                isinstance(exc, ModuleNotFoundError)
                and exc.name == reference.split(":")[0].split(".")[0]
            ):
                error += " (modules come from the worker's packages, PYTHONPATH and --path DIR)"
            return NodeResult.failed(f"{context.mask(error)}\n{details}")

        # Streamed: print() and log records go out in the order they happen, as they happen.
        stream = context.log_stream
        logger, captured = _capturing_logger(f"spane.node.{context.node_id}", stream)

        def make_context() -> PythonContext:
            return PythonContext(
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

        try:
            arguments = _arguments(reference, _signature(function), kwargs, make_context)
        except ValueError as exc:
            return NodeResult.failed(context.mask(str(exc)))
        with captured_output(stream) as printed:
            try:
                result = function(**arguments)
                if inspect.iscoroutine(result):  # an `async def` function: run to its end
                    result = asyncio.run(result)
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
