"""The error of a template that cannot be rendered, apart from the renderer: the store catches
it without importing jinja2, which every CLI command would then pay for."""

from __future__ import annotations


class ExpressionError(ValueError):
    """Raised when an expression does not parse, names something undefined, or breaks out."""
