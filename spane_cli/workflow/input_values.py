"""Inputs given as text (`spane run -i NAME=VALUE`, `--input-file`), typed by what the
workflow declares.

An input whose declaration allows a string (its `type`, or an `enum` of strings) keeps the
text as it was typed: `-i tag=1.10`
is "1.10", `-i flag=true` is "true", `-i note=null` is "null". Any other declared input, and
an input the workflow does not declare, is JSON when its text parses as JSON (`5`, `true`,
`[1, 2]`, `{"a": 1}`, `null`) and the text itself otherwise. In an input file the same rule
holds for unquoted YAML scalars: `tag: 1.10` gives a `string` input "1.10", not 1.1.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import yaml

from spane_cli.workflow.loader import LoadFailed, load_document
from spane_cli.workflow.model import InputSpec

_COMPOSER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class InputTextError(ValueError):
    """Raised when `-i` text or an input file cannot be read as inputs (a usage error)."""


# Keywords that constrain strings only: an input declared with them and no `type` is text.
_STRING_KEYWORDS = ("pattern", "minLength", "maxLength", "format")


def takes_text(spec: InputSpec | None) -> bool:
    """True when the input's declaration allows a string: its value stays the text typed.
    That is a `type` naming `string`; with no `type`, an `enum` or `const` of strings only,
    or a keyword that constrains strings only (`pattern`, `minLength`, ...)."""
    if spec is None:
        return False
    schema = spec.schema
    declared = schema.get("type")
    if isinstance(declared, str):
        return declared == "string"
    if isinstance(declared, Iterable):
        return "string" in declared
    choices = schema.get("enum", (schema["const"],) if "const" in schema else None)
    if isinstance(choices, Iterable) and not isinstance(choices, str):
        listed = list(choices)
        return bool(listed) and all(isinstance(choice, str) for choice in listed)
    return any(keyword in schema for keyword in _STRING_KEYWORDS)


def typed_pairs(pairs: Sequence[str], specs: Iterable[InputSpec]) -> dict[str, Any]:
    """`-i NAME=VALUE` assignments as input values, each typed by its input's declaration."""
    by_name = {spec.name: spec for spec in specs}
    values: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise InputTextError(f"bad input {pair!r}: use -i NAME=VALUE")
        key, text = pair.split("=", 1)
        name = key.strip()
        values[name] = text if takes_text(by_name.get(name)) else _json_or_text(text)
    return values


def _json_or_text(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def typed_document(text: str, specs: Iterable[InputSpec], source: str) -> dict[str, Any]:
    """An input file (JSON or YAML, a mapping of input names to values) as input values; an
    unquoted scalar given to an input that takes text stays the text written in the file."""
    if all(not line.strip() or line.lstrip().startswith("#") for line in text.splitlines()):
        return {}
    try:
        document = load_document(source, text)
    except LoadFailed as failed:
        raise InputTextError(failed.problems[0].render()) from None
    if document.problems:
        raise InputTextError(document.problems[0].render())
    data = document.data
    if not isinstance(data, dict):
        raise InputTextError(f"{source}: expected a mapping of input names to values")
    text_inputs = {spec.name for spec in specs if takes_text(spec)}
    if text_inputs:
        data.update(_plain_scalars(text, text_inputs))
    return data


def _plain_scalars(text: str, names: set[str]) -> Mapping[str, str]:
    """The text of each top-level unquoted scalar whose key is in `names`, as written."""
    root = yaml.compose(text, Loader=_COMPOSER)
    if not isinstance(root, yaml.MappingNode):
        return {}
    found: dict[str, str] = {}
    for key_node, value_node in root.value:
        plain = isinstance(value_node, yaml.ScalarNode) and not value_node.style
        if isinstance(key_node, yaml.ScalarNode) and key_node.value in names and plain:
            found[key_node.value] = value_node.value
    return found
