"""Sandboxed Jinja2 expressions: parsing at validation time, rendering on workers.

A value that is exactly one `{{ expr }}` keeps its native type; mixed text renders as a
string; `when` and `cases[].when` are bare expressions.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

import jinja2
import jinja2.nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

from spane_cli.workflow.expression_error import ExpressionError as ExpressionError

_SINGLE_EXPRESSION = re.compile(r"^\s*\{\{(?P<expr>.*?)\}\}\s*$", re.DOTALL)


# The most a template may build with one operator or one render (characters or items):
# `'a' * 10**9` or `[0] * 10**9` would otherwise take a worker's memory before any limit.
MAX_BUILT_SIZE = 10_000_000
MAX_EXPONENT = 1_000


class _BoundedEnvironment(ImmutableSandboxedEnvironment):
    """The immutable sandbox, whose repetition, concatenation and power operators refuse to
    build values past MAX_BUILT_SIZE (Jinja2's documented operator interception)."""

    intercepted_binops = frozenset({"*", "**", "+"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            _check_repeat(left, right)
            _check_repeat(right, left)
        elif operator == "+" and _sized(left) and _sized(right):
            _check_size(len(left) + len(right))
        elif operator == "**" and _huge_power(left, right):
            raise SecurityError(f"an exponent over {MAX_EXPONENT} builds too big a number")
        return super().call_binop(context, operator, left, right)


def _huge_power(base: Any, exponent: Any) -> bool:
    whole = isinstance(base, int) and isinstance(exponent, int)
    return whole and abs(exponent) > MAX_EXPONENT and abs(base) > 1


def _sized(value: Any) -> bool:
    return isinstance(value, str | list | tuple)


def _check_size(size: int) -> None:
    if size > MAX_BUILT_SIZE:
        raise SecurityError(f"the value would hold {size:,} items, over {MAX_BUILT_SIZE:,}")


def _check_repeat(sequence: Any, times: Any) -> None:
    if _sized(sequence) and isinstance(times, int):
        _check_size(len(sequence) * times)


def check_weight(value: Any, what: str = "the value") -> None:
    """Refuse a value whose text would be past MAX_BUILT_SIZE before it is built: a list
    that holds the same big list a thousand times is small in memory and huge as text or
    JSON (every operator allowed it: each step was small)."""
    budget = MAX_BUILT_SIZE
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            budget -= len(item) + 2
        elif isinstance(item, Mapping):
            budget -= len(item) + 2
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list | tuple):
            budget -= len(item) + 2
            pending.extend(item)
        else:
            budget -= 8
        if budget < 0:
            raise SecurityError(f"{what} would be longer than {MAX_BUILT_SIZE:,} characters")


def _printable(value: Any) -> Any:
    """Each `{{ ... }}` of a template becomes text: bounded before str() builds it."""
    if not isinstance(value, str):
        check_weight(value, "the printed value")
    return value


@lru_cache(maxsize=1)
def environment() -> ImmutableSandboxedEnvironment:
    # Imported here: the filters use this module's limits.
    from spane_cli.workflow.filters import FILTERS, TESTS

    bounded = _BoundedEnvironment(
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        finalize=_printable,
    )
    bounded.filters.update(FILTERS)
    bounded.tests.update(TESTS)
    return bounded


def is_template(value: str) -> bool:
    return "{{" in value or "{%" in value or "{#" in value


def syntax_error(text: str, *, bare: bool = False) -> str | None:
    """A message when `text` does not parse, else None."""
    if not bare:
        return parsed(text)[1]
    try:
        environment().compile_expression(text)
    except jinja2.TemplateAssertionError as exc:
        # Compiling a bare expression looks its filters and tests up: an unknown one is not
        # a syntax error, and validation reports it with the others, at its own column.
        if exc.message and exc.message.startswith(("No filter named", "No test named")):
            return None
        return f"expression does not parse: {exc.message}"
    except jinja2.TemplateSyntaxError as exc:
        return f"expression does not parse: {exc.message}"
    except RecursionError:
        return "expression nests too deeply to parse"
    return None


def parsed(text: str) -> tuple[jinja2.nodes.Template | None, str | None, int]:
    """The template's syntax tree, or None, the message saying why it does not parse and the
    line of the template where that is."""
    try:
        return environment().parse(text), None, 1
    except jinja2.TemplateSyntaxError as exc:
        return None, f"expression does not parse: {exc.message}", exc.lineno or 1
    except RecursionError:
        return None, "expression nests too deeply to parse", 1


def _single_expression(text: str) -> str | None:
    match = _SINGLE_EXPRESSION.match(text)
    if not match:
        return None
    inner = match.group("expr")
    return None if "{{" in inner or "}}" in inner else inner


# What computing a value can raise. A database or network error from a lazily read `nodes.*`
# is not among them: it must reach the worker, which waits the outage out.
_COMPUTATION_ERRORS: tuple[type[Exception], ...] = (
    ArithmeticError,
    LookupError,
    TypeError,
    ValueError,
    AttributeError,
    RecursionError,
    MemoryError,
    AssertionError,
)


@contextmanager
def _as_expression_error(text: str) -> Iterator[None]:
    """Whatever a template raises while it renders (a sandbox refusal, an undefined name, a
    ZeroDivisionError, a RecursionError from a deep expression) becomes one ExpressionError:
    it fails the node that rendered it, never the worker."""
    try:
        yield
    except ExpressionError:
        raise
    except SecurityError as exc:
        raise ExpressionError(f"sandbox refused {text!r}: {exc}") from None
    except jinja2.UndefinedError as exc:
        raise ExpressionError(f"{exc.message} in {text!r}") from None
    except jinja2.TemplateError as exc:
        raise ExpressionError(f"{exc} in {text!r}") from None
    except _COMPUTATION_ERRORS as exc:
        raise ExpressionError(f"{type(exc).__name__}: {exc} in {text!r}") from None


def evaluate(text: str, scope: Mapping[str, Any]) -> Any:
    """Evaluate a bare expression (as in `when`)."""
    with _as_expression_error(text):
        compiled = environment().compile_expression(text, undefined_to_none=False)
        result = compiled(**scope)
        if isinstance(result, list | tuple | dict):
            # Stored as JSON next: `[[big] * 1000] * 1000` must not reach json.dumps.
            check_weight(result)
    if isinstance(result, jinja2.Undefined):
        raise ExpressionError(f"undefined value in {text!r}")
    return result


def render_value(value: Any, scope: Mapping[str, Any]) -> Any:
    """Render every template inside `value` (dicts and lists walked recursively)."""
    if isinstance(value, str):
        if not is_template(value):
            return value
        single = _single_expression(value)
        if single is not None:
            return evaluate(single, scope)
        with _as_expression_error(value):
            rendered = environment().from_string(value).render(**scope)
            _check_size(len(rendered))
            return rendered
    if isinstance(value, Mapping):
        return {k: render_value(v, scope) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [render_value(v, scope) for v in value]
    return value
