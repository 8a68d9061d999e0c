"""Finds node types: the built-ins, then third-party classes under `spane.nodes` entry points.

Validation only needs the config schemas; loading the executors themselves is deferred until
a worker runs a node, so `spane validate` stays fast.
"""

from __future__ import annotations

import importlib
import threading
from functools import lru_cache
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from spane_cli.workflow.node_configs import BUILTIN_CONFIG_SCHEMAS, JsonSchema

if TYPE_CHECKING:
    from spane_cli.nodes.base import NodeType

ENTRY_POINT_GROUP = "spane.nodes"


@lru_cache(maxsize=1)
def _load_third_party() -> tuple[dict[str, Any], dict[str, str]]:
    """(classes by type name, load errors by type name) of the `spane.nodes` entry points."""
    found: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        if entry.name in BUILTIN_CONFIG_SCHEMAS:
            continue  # built-ins cannot be replaced by a plugin
        try:
            found[entry.name] = entry.load()
        except Exception as exc:  # a broken plugin must not break validation of other types
            errors[entry.name] = f"{type(exc).__name__}: {exc}"
    return found, errors


def _third_party_classes() -> dict[str, Any]:
    return _load_third_party()[0]


def _third_party_load_errors() -> dict[str, str]:
    return _load_third_party()[1]


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
# Types that finish in microseconds inside the worker, with no I/O and no user code: a worker
# claims several of them in one transaction (a slow node is only claimed right before it runs,
# so that its start time, its timeout and the choice of worker stay true).
INSTANT_TYPES = frozenset({"noop", "transform", "branch", "fail"})
_instances: dict[str, NodeType] = {}
# foreach items run on threads; one instance per type is enough, so creation is serialized.
_instances_lock = threading.Lock()


def _node_class(type_name: str) -> Any:
    if type_name in _BUILTIN_CLASSES:
        module_name, class_name = _BUILTIN_CLASSES[type_name]
        return getattr(importlib.import_module(module_name), class_name)
    cls = third_party_class(type_name)
    if cls is not None:
        return cls
    broken = _third_party_load_errors().get(type_name)
    if broken is not None:
        raise KeyError(
            f"node type {type_name!r}: its spane.nodes entry point fails to load: {broken}"
        )
    raise KeyError(
        f"unknown node type {type_name!r}: not built in "
        f"({', '.join(_BUILTIN_CLASSES)}) and not a spane.nodes entry point"
    )


def node_type(type_name: str) -> NodeType:
    """A ready instance of the node type `type_name` (built-in or from `spane.nodes`).

    Raises KeyError for a type that is neither.
    """
    instance = _instances.get(type_name)
    if instance is not None:
        return instance
    with _instances_lock:
        instance = _instances.get(type_name)
        if instance is None:
            instance = _instances[type_name] = _node_class(type_name)()
    return instance


def preload_builtins() -> None:
    """Import and create every built-in type now: a worker does it before its first job, so
    that job starts as soon as the next (its start time, a rate limit's spacing, stay true)."""
    for type_name in _BUILTIN_CLASSES:
        node_type(type_name)
