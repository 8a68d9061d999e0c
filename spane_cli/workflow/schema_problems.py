"""JSON Schema errors turned into the sentences `spane validate` prints: one function that
knows the schema's shapes (durations, node types, ids, inputs) and names the place in words."""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping
from typing import Any

import jsonschema

from spane_cli.workflow.durations import DURATION_HINT
from spane_cli.workflow.limits import RATE_HINT, RATE_PATTERN
from spane_cli.workflow.problems import Path, format_path
from spane_cli.workflow.schema import NODE_ID_PATTERN, WORKFLOW_NAME_PATTERN

# (where, message, whether it points at a mapping's key rather than its value)
Finding = tuple[Path, str, bool]


def _at(path: Path, message: str, key: bool = False) -> Finding:
    return (path, message, key)


def schema_problems(error: jsonschema.ValidationError) -> Iterator[Finding]:
    """What one JSON Schema error means, in words: (where, message, points at a key?)."""
    path: Path = tuple(error.absolute_path)
    where = describe(path)
    schema = error.schema if isinstance(error.schema, dict) else {}
    validator = error.validator
    if validator == "additionalProperties":
        allowed = list((schema.get("properties") or {}).keys())
        instance = error.instance if isinstance(error.instance, dict) else {}
        for extra in instance:
            if extra not in allowed:
                hint = did_you_mean(extra, allowed)
                yield _at((*path, extra), f"unknown field {extra!r} in {where}{hint}", True)
        return
    if validator == "anyOf" and _is_duration_schema(schema):
        yield _at(path, f"invalid duration {error.instance!r} for {where}: {DURATION_HINT}")
        return
    if validator == "enum" and path[-1:] == ("type",) and path[:1] == ("nodes",):
        hint = did_you_mean(str(error.instance), schema.get("enum", []))
        yield _at(path, f"unknown node type {error.instance!r} in {describe(path[:-1])}{hint}")
        return
    if validator == "enum":
        options = ", ".join(str(o) for o in schema.get("enum", []))
        hint = did_you_mean(str(error.instance), [str(o) for o in schema.get("enum", [])])
        yield _at(path, f"{where}: {error.instance!r} is not one of {options}{hint}")
        return
    if validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else error.message
        yield _at(path, f"{where}: missing required field {missing!r}")
        return
    if validator == "pattern" and path[-1:] == ("name",) and len(path) == 1:
        yield _at(
            path,
            f"workflow name {error.instance!r} must match {WORKFLOW_NAME_PATTERN} "
            "(lowercase letters, digits, _ . -)",
        )
        return
    if validator == "pattern" and schema.get("pattern") == RATE_PATTERN:
        yield _at(path, f"invalid rate {error.instance!r} for {where}: {RATE_HINT}")
        return
    if path[:1] in (("rate_limits",), ("circuit_breakers",)) and "propertyNames" in (
        error.schema_path
    ):
        key = str(error.instance)
        usable = (
            "workflow, type:NAME, queue:NAME or host:NAME"
            if path[:1] == ("rate_limits",)
            else "a host name (with :PORT when the URLs name one) or *"
        )
        yield _at((*path, key), f"invalid key {key!r} in {path[0]}: use {usable}", True)
        return
    if validator == "pattern" and "propertyNames" in error.schema_path:
        # jsonschema reports a bad key on the mapping; point at the key itself.
        key = str(error.instance)
        yield _at(
            (*path, key),
            f"invalid id {key!r} in {where}: must match {NODE_ID_PATTERN} "
            "(a letter or _, then letters, digits, _ or -)",
            True,
        )
        return
    if validator == "pattern" and path[-1:] == ("function",) and "config" in path:
        yield _at(
            path,
            f"{where}: {error.instance!r} must name a callable as 'package.module:function'",
        )
        return
    if validator == "minProperties" and path == ("nodes",):
        yield _at(path, "nodes: a workflow needs at least one node")
        return
    if validator == "anyOf" and path[:1] == ("inputs",) and path[-1:] == ("type",):
        types = "string, integer, number, boolean, array, object, null"
        yield _at(path, f"{where}: {error.instance!r} is not a JSON type ({types})")
        return
    if validator == "oneOf" and path[-1:] == ("config",):
        choices = [tuple(s.get("required", [])) for s in schema.get("oneOf", [])]
        names = " or ".join(c[0] for c in choices if c)
        yield _at(path, f"{where}: give exactly one of {names}")
        return
    if validator == "not" and path[-1:] == ("config",):
        yield _at(path, f"{where}: give either json or body, not both")
        return
    if validator == "type":
        expected = schema.get("type")
        expected_text = " or ".join(expected) if isinstance(expected, list) else expected
        yield _at(
            path,
            f"{where}: expected {_article(str(expected_text))}, got {json_type_of(error.instance)}",
        )
        return
    if validator == "const" and path == ("version",):
        yield _at(path, f"unsupported version {error.instance!r}: only version 1 exists")
        return
    yield _at(path, f"{where}: {error.message}")


def did_you_mean(word: str, choices: Iterator[str] | list[str] | tuple[str, ...]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _is_duration_schema(schema: Mapping[str, Any]) -> bool:
    branches = schema.get("anyOf") or []
    return any(
        isinstance(b, dict)
        and (("pattern" in b and "ms" in b["pattern"]) or b.get("$ref") == "#/$defs/duration")
        for b in branches
    )


def json_type_of(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return f"a number ({value})"
    if isinstance(value, str):
        return f"a string ({value!r})" if len(value) < 40 else "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _article(type_name: str) -> str:
    names = {"object": "a mapping", "array": "a list", "integer": "an integer"}
    return names.get(type_name, f"a {type_name}")


def describe(path: Path) -> str:
    if not path:
        return "the workflow"
    if path[0] == "nodes" and len(path) >= 2:
        rest = format_path(path[2:])
        return f"node {path[1]!r}" + (f" field {rest}" if rest else "")
    if path[0] == "inputs" and len(path) >= 2:
        rest = format_path(path[2:])
        return f"input {path[1]!r}" + (f" field {rest}" if rest else "")
    return format_path(path)
