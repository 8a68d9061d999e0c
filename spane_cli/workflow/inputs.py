"""A workflow's declared `inputs` applied to the values a caller hands it: defaults filled in,
required inputs checked, each value checked against its JSON Schema keywords. Used for the
input a parent gives a sub-workflow, at validation when it is written out in full and when
the child starts otherwise."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from spane_cli.workflow.model import InputSpec, thaw


def as_declared(spec: InputSpec, value: Any) -> Any:
    """A number or a boolean given for a `string` input becomes its JSON text (`5` -> "5",
    true -> "true"), as a template that renders `{{ item.id }}` into a string field would
    expect; nothing else is converted."""
    if spec.schema.get("type") == "string" and isinstance(value, bool | int | float):
        return json.dumps(value)
    return value


def value_problems(spec: InputSpec, value: Any) -> list[str]:
    """What is wrong with `value` for the input `spec` (empty when it fits)."""
    # Imported here: every CLI command reaches this module, few check an input.
    from jsonschema import Draft202012Validator

    validator = Draft202012Validator(thaw(spec.schema))
    return [f"input {spec.name!r}: {error.message}" for error in validator.iter_errors(value)]


def missing_inputs(specs: Sequence[InputSpec], names: Sequence[str]) -> list[str]:
    """A problem for each required input (without a default) that is not among `names`."""
    return [
        f"missing required input {spec.name!r}"
        for spec in specs
        if spec.required and not spec.has_default and spec.name not in names
    ]


def unknown_inputs(specs: Sequence[InputSpec], names: Sequence[str]) -> list[tuple[str, str]]:
    """(name, problem) for each of `names` the workflow does not declare; a workflow that
    declares no inputs takes any."""
    declared = sorted(spec.name for spec in specs)
    if not declared:
        return []
    return [
        (name, f"unknown input {name!r}; inputs are: {', '.join(declared)}")
        for name in names
        if name not in declared
    ]


def apply_inputs(specs: Sequence[InputSpec], given: Any) -> tuple[dict[str, Any], list[str]]:
    """(the input with defaults filled in, the problems found). Apart from `as_declared`,
    values are not converted: "abc" for an integer input is a problem, not a guess."""
    if given is None:
        given = {}
    if not isinstance(given, Mapping):
        return {}, [f"the input must be a mapping, got {type(given).__name__}"]
    resolved = dict(given)
    problems = missing_inputs(specs, list(resolved))
    problems += [problem for _, problem in unknown_inputs(specs, list(resolved))]
    for spec in specs:
        if spec.name in resolved:
            resolved[spec.name] = as_declared(spec, resolved[spec.name])
            problems += value_problems(spec, resolved[spec.name])
        elif spec.has_default:
            resolved[spec.name] = thaw(spec.default)
    return resolved, problems
