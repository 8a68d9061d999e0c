"""What `spane validate` finds wrong in a template beyond its syntax, and the hints it gives
when shell syntax collides with Jinja's.

Jinja2 looks a filter or a test up only when the template runs: `{{ x | nosuchfilter }}`
parses, and would fail the node at run time. Here every filter and test a template names,
directly or through `map`, `select`, `reject`, `selectattr` and `rejectattr`, is checked
against the sandbox's own. Each finding carries a pattern that finds the offending text in
the file, so the problem is reported at its own line and column.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import jinja2.nodes

from spane_cli.workflow.schema_problems import did_you_mean


@dataclass(frozen=True)
class Finding:
    message: str
    # Finds the text the finding is about (at its first group that matched, if it has
    # groups); None: the template's own location is the best there is.
    where: re.Pattern[str] | None = None
    # The line of the template it is on, for when `where` finds nothing.
    line: int = 1


# Filters that take the name of another filter (map) or of a test (the others), and the
# position of that name among their arguments.
_FILTER_BY_NAME = {"map": 0}
_TEST_BY_NAME = {"select": 0, "reject": 0, "selectattr": 1, "rejectattr": 1}


def unknown_names(
    tree: jinja2.nodes.Node, filters: Mapping[str, Any], tests: Mapping[str, Any]
) -> Iterator[Finding]:
    """Every filter and test `tree` names that the environment does not have."""
    for node in tree.find_all((jinja2.nodes.Filter, jinja2.nodes.Test)):
        if isinstance(node, jinja2.nodes.Test):
            if node.name not in tests:
                yield _unknown("test", node.name, tests, node.lineno)
            continue
        assert isinstance(node, jinja2.nodes.Filter)
        if node.name not in filters:
            yield _unknown("filter", node.name, filters, node.lineno)
        for by_name, kind, known in (
            (_FILTER_BY_NAME, "filter", filters),
            (_TEST_BY_NAME, "test", tests),
        ):
            if node.name in by_name:
                named = _name_argument(node, by_name[node.name])
                if named is not None and named not in known:
                    yield _unknown(kind, named, known, node.lineno)


def _name_argument(node: jinja2.nodes.Filter, position: int) -> str | None:
    """The constant name given to map/select/..., when there is one (`map(attribute=...)`
    names an attribute, not a filter)."""
    if any(keyword.key == "attribute" for keyword in node.kwargs) and node.name == "map":
        return None
    if len(node.args) <= position:
        return None
    argument = node.args[position]
    if isinstance(argument, jinja2.nodes.Const) and isinstance(argument.value, str):
        return argument.value
    return None


def _unknown(kind: str, name: str, known: Mapping[str, Any], line: int) -> Finding:
    hint = did_you_mean(name, sorted(known))
    quoted = re.escape(name)
    before = r"\|\s*" if kind == "filter" else r"\bis\s+(?:not\s+)?"
    # The name after `|` or `is`, or quoted as map, select and the others are given it.
    where = re.compile(rf"{before}({quoted})\b|['\"]({quoted})['\"]")
    return Finding(f"unknown {kind} {name!r}{hint}", where, line)


# -- shell syntax that Jinja reads as its own -------------------------------------------------

_COMMENT_HINT = (
    "`{#` starts a Jinja comment: for the shell's ${#VAR} write ${{ '{#' }}VAR}, "
    "or put the script between {% raw %} and {% endraw %}"
)
_TAG_HINT = (
    "`{%` starts a Jinja tag: for a literal {% write {{ '{%' }}, "
    "or put the text between {% raw %} and {% endraw %}"
)
_GO_TEMPLATE_HINT = (
    "`{{` starts a Jinja expression: write a Go template (docker --format, kubectl "
    "go-template) as {{ '{{' }}.Field{{ '}}' }}, or put it between {% raw %} and {% endraw %}"
)
_RAW_HINT = "if this is shell syntax, not a template, put it between {% raw %} and {% endraw %}"

_GO_TEMPLATE = re.compile(r"\{\{-?\s*\.")
_SHELL_LENGTH = re.compile(r"\$\{#")


def syntax_hint(text: str, message: str, *, shell: bool) -> Finding | None:
    """A hint for a template that does not parse because of shell (or Go template) syntax;
    `shell`: the text is a command (`run:`, `args:`), where a generic hint also helps."""
    if "comment" in message and "{#" in text:
        return Finding(_COMMENT_HINT, re.compile(r"\$?\{#"))
    if "unknown tag" in message and "{%" in text:
        return Finding(_TAG_HINT, re.compile(r"\{%"))
    if _GO_TEMPLATE.search(text):
        return Finding(_GO_TEMPLATE_HINT, _GO_TEMPLATE)
    if shell:
        return Finding(_RAW_HINT)
    return None


def swallowed_by_comment(text: str, environment: jinja2.Environment) -> Finding | None:
    """`${#VAR} ... #}` parses: a Jinja comment that opens right after a `$` silently eats
    the script up to the next `#}` (one between {% raw %} and {% endraw %} is data)."""
    if "{#" not in text:
        return None
    previous = ""
    for _line, token, value in environment.lex(text):
        if token == "comment_begin" and previous.endswith("$"):
            message = "`${#` starts a Jinja comment that hides the text up to the next `#}`; "
            return Finding(message + _COMMENT_HINT.split(": ", 1)[1], _SHELL_LENGTH)
        previous = value if token == "data" else ""
    return None
