"""Finds node types: the built-ins, then third-party classes under `spane.nodes` entry points.

Validation only needs the config schemas; loading the executors themselves is deferred until
a worker runs a node, so `spane validate` stays fast.
"""

from __future__ import annotations

from functools import lru_cache
from importlib.metadata import entry_points
from typing import Any

from spane_cli.workflow.node_configs import BUILTIN_CONFIG_SCHEMAS, JsonSchema

ENTRY_POINT_GROUP = "spane.nodes"


@lru_cache(maxsize=1)
def _third_party_classes() -> dict[str, Any]:
    found: dict[str, Any] = {}
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        if entry.name in BUILTIN_CONFIG_SCHEMAS:
            continue  # built-ins cannot be replaced by a plugin
        try:
            found[entry.name] = entry.load()
        except Exception:  # a broken plugin must not break validation of other types
            continue
    return found


def third_party_config_schemas() -> dict[str, JsonSchema]:
    return {
        name: getattr(cls, "config_schema", {"type": "object"})
        for name, cls in _third_party_classes().items()
    }


def third_party_class(type_name: str) -> Any | None:
    return _third_party_classes().get(type_name)


# Built-in type -> (module, class); imported on first use so `validate` stays light.
_BUILTIN_CLASSES = {
    "shell": ("spane_cli.nodes.shell", "ShellNode"),
    "http": ("spane_cli.nodes.http", "HttpNode"),
    "python": ("spane_cli.nodes.python_call", "PythonNode"),
    "transform": ("spane_cli.nodes.transform", "TransformNode"),
    "branch": ("spane_cli.nodes.branch", "BranchNode"),
    "delay": ("spane_cli.nodes.delay", "DelayNode"),
    "workflow": ("spane_cli.nodes.workflow_call", "WorkflowNode"),
    "noop": ("spane_cli.nodes.noop", "NoopNode"),
    "fail": ("spane_cli.nodes.fail", "FailNode"),
}
_instances: dict[str, Any] = {}


def node_type(type_name: str) -> Any:
    """A ready instance of the node type `type_name` (built-in or from `spane.nodes`)."""
    instance = _instances.get(type_name)
    if instance is not None:
        return instance
    if type_name in _BUILTIN_CLASSES:
        import importlib

        module_name, class_name = _BUILTIN_CLASSES[type_name]
        cls = getattr(importlib.import_module(module_name), class_name)
    else:
        cls = third_party_class(type_name)
        if cls is None:
            raise KeyError(
                f"unknown node type {type_name!r}: not built in, not a spane.nodes entry point"
            )
    instance = _instances[type_name] = cls()
    return instance
