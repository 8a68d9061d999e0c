"""The defaults the JSON Schema declares (and the reference tables print) are the ones the
engine applies to a file that leaves the field out."""

from __future__ import annotations

from typing import Any

from spane_cli.nodes.base import NodeContext
from spane_cli.nodes.fail import FailNode
from spane_cli.nodes.http import DEFAULT_TIMEOUT_SECONDS
from spane_cli.workflow.durations import parse_duration
from spane_cli.workflow.model import build_workflow
from spane_cli.workflow.node_configs import BUILTIN_CONFIG_SCHEMAS
from spane_cli.workflow.schedule_spec import ScheduleSpec
from spane_cli.workflow.schema import workflow_schema

SCHEMA = workflow_schema()
DEFS = SCHEMA["$defs"]


def declared(properties: dict[str, Any]) -> dict[str, Any]:
    """{field: default} of the fields whose schema (or the schema they refer to) has one."""
    found = {}
    for name, prop in properties.items():
        referred = DEFS.get(prop.get("$ref", "").rsplit("/", 1)[-1], {})
        if "default" in prop or "default" in referred:
            found[name] = prop.get("default", referred.get("default"))
    return found


def plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def bare_workflow() -> Any:
    return build_workflow(
        {
            "version": 1,
            "name": "bare",
            "inputs": {"x": {}},
            "schedule": {"every": 60},
            "nodes": {"a": {"type": "noop"}},
        }
    )


def test_node_defaults_are_what_a_bare_node_gets() -> None:
    node = bare_workflow().nodes["a"]
    defaults = declared(DEFS["node"]["properties"])
    assert defaults  # the schema declares some
    assert {name: plain(getattr(node, name)) for name in defaults} == defaults


def test_retry_defaults_are_what_no_retry_means() -> None:
    policy = bare_workflow().nodes["a"].retry
    defaults = declared(DEFS["retry"]["properties"])
    got = {name: getattr(policy, name) for name in defaults}
    assert got == {
        name: parse_duration(value) if name == "delay" else value
        for name, value in defaults.items()
    }


def test_workflow_and_input_defaults() -> None:
    workflow = bare_workflow()
    top = declared(SCHEMA["properties"])
    assert {name: getattr(workflow, name) for name in top} == top
    assert declared(DEFS["input"]["properties"]) == {"required": workflow.inputs[0].required}


def test_schedule_defaults_are_what_a_bare_schedule_gets() -> None:
    spec = ScheduleSpec.from_data("bare", {"every": 60})
    defaults = declared(DEFS["schedule"]["properties"])
    assert {name: str(getattr(spec, name)) for name in defaults} == {
        name: str(value) for name, value in defaults.items()
    }


def test_node_config_defaults() -> None:
    defaults = {
        (kind, name): value
        for kind, schema in BUILTIN_CONFIG_SCHEMAS.items()
        for name, value in declared(schema.get("properties", {})).items()
    }
    # Each is checked against the executor that applies it.
    assert defaults == {
        ("shell", "parse"): "text",
        ("http", "method"): "GET",
        ("http", "timeout"): "30s",
        ("fail", "message"): "failed by a fail node",
    }
    assert parse_duration(defaults[("http", "timeout")]) == DEFAULT_TIMEOUT_SECONDS
    context = NodeContext("e", "w", "guard", 1, config={}, input=None, scope={})
    assert FailNode().run(context).error == defaults[("fail", "message")]
