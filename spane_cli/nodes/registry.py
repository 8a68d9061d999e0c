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
