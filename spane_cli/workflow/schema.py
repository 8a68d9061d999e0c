"""The JSON Schema of the workflow language, built here and written to schema/ by a script.

This module is the one source of truth: `scripts/generate.py` writes
`schema/workflow.schema.json` from `workflow_schema()`, and a test fails when the committed
file differs.
"""

from __future__ import annotations

from collections.abc import Mapping

from spane_cli.workflow.durations import DURATION_PATTERN
from spane_cli.workflow.limits import BREAKER_HOST_PATTERN, LIMIT_KEY_PATTERN, ON_OPEN, RATE_PATTERN
from spane_cli.workflow.node_configs import BUILTIN_CONFIG_SCHEMAS, JsonSchema
from spane_cli.workflow.schedule_spec import SCHEDULE_NAME_PATTERN, MisfirePolicy, OverlapPolicy

SCHEMA_ID = "https://spane.dev/schema/workflow.schema.json"
WORKFLOW_NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,63}$"
POOL_NAME_PATTERN = WORKFLOW_NAME_PATTERN
NODE_ID_PATTERN = r"^[A-Za-z_][A-Za-z0-9_-]*$"
TRIGGER_RULES = (
    "all_success",
    "all_done",
    "all_failed",
    "one_success",
    "one_failed",
    "none_failed",
    "none_skipped",
    "none_failed_min_one_success",
    "all_done_min_one_success",
    "all_skipped",
    "one_done",
    "always",
)
# The names a `retry.when` expression may use (scheduler.retry_scope gives their values).
RETRY_WHEN_NAMES = ("error", "exit_code", "status", "attempt")
BACKOFF_KINDS = ("fixed", "linear", "exponential")
OVERLAP_POLICIES = tuple(str(p) for p in OverlapPolicy)
MISFIRE_POLICIES = tuple(str(p) for p in MisfirePolicy)


def _defs() -> dict[str, JsonSchema]:
    return {
        "duration": {
            "description": "Seconds as a number, or 500ms, 90s, 5m, 1h30m, 2d, or ISO 8601 PT5M.",
            "anyOf": [
                {"type": "number", "minimum": 0},
                {"type": "string", "pattern": DURATION_PATTERN},
            ],
        },
        "duration_or_template": {
            "description": "A duration, or a template that renders to one when the node runs.",
            "anyOf": [
                {"$ref": "#/$defs/duration"},
                {"type": "string", "pattern": r"\{\{"},
            ],
        },
        "retry": {
            "type": "object",
            "description": "How often and how fast a failing node is tried again.",
            "properties": {
                "attempts": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": 100,
                    "default": 1,
                    "description": "Every try counts, the first included.",
                },
                "backoff": {
                    "enum": list(BACKOFF_KINDS),
                    "default": "fixed",
                    "description": "fixed: delay each time; linear: delay*n; exponential: "
                    "delay*2^(n-1).",
                },
                "delay": {
                    "$ref": "#/$defs/duration",
                    "default": 0,
                    "description": "The wait before the second try.",
                },
                "max_delay": {
                    "$ref": "#/$defs/duration",
                    "description": "Upper bound on any wait.",
                },
                "jitter": {
                    "type": "boolean",
                    "default": False,
                    "description": "Randomize each wait by up to ±50% to spread retries.",
                },
                "when": {
                    "type": "string",
                    "description": "A bare expression over the failure (error, exit_code, "
                    "status of an http response, attempt); false: fail now, no further try.",
                },
            },
            "additionalProperties": False,
        },
        "queue": {
            "type": "string",
            "pattern": r"^[A-Za-z0-9_.:-]{1,64}$",
            "default": "default",
            "description": "The RQ queue the node's jobs go to.",
        },
        "priority": {
            "type": "integer",
            "minimum": -1000,
            "maximum": 1000,
            "default": 0,
            "description": "Higher runs first among the jobs waiting on a queue; each unit counts "
            "as SPANE_PRIORITY_AGING (default 1m) of waiting, so lower priorities are not starved.",
        },
        "pool_name": {
            "type": "string",
            "pattern": POOL_NAME_PATTERN,
            "description": "A pool's name, shared by every workflow that uses it.",
        },
        "rate": {
            "type": "string",
            "pattern": RATE_PATTERN,
            "description": "Starts per moving window: 10/s, 100/min, 5/30s, 1000/h, 50/d.",
        },
        "circuit_breaker": {
            "type": ["object", "null"],
            "description": "When the host's breaker opens, and what its nodes do then.",
            "properties": {
                "failures": {
                    "type": "integer",
                    "minimum": 1,
                    "default": 5,
                    "description": "Failures within `window` that open the breaker.",
                },
                "window": {"$ref": "#/$defs/duration", "default": "60s"},
                "open_for": {
                    "$ref": "#/$defs/duration",
                    "default": "30s",
                    "description": "How long it stays open before one probe may try.",
                },
                "on_open": {
                    "enum": list(ON_OPEN),
                    "default": "fail",
                    "description": "fail: its nodes fail at once; wait: they wait, holding no "
                    "worker, until a probe closes it.",
                },
            },
            "additionalProperties": False,
        },
        "input": {
            "type": "object",
            "description": "JSON Schema keywords for one input, plus default, required and "
            "description.",
            "properties": {
                "type": {
                    "description": "JSON type(s) of the value.",
                    "anyOf": [
                        {
                            "enum": [
                                "string",
                                "integer",
                                "number",
                                "boolean",
                                "array",
                                "object",
                                "null",
                            ]
                        },
                        {"type": "array", "items": {"type": "string"}},
                    ],
                },
                "required": {
                    "type": "boolean",
                    "default": False,
                    "description": "Submit fails without it.",
                },
                "default": {"description": "Used when the input is not given."},
                "description": {"type": "string", "description": "Shown in --help of runs."},
            },
        },
        "node": _node_schema(),
        "schedule": _schedule_schema(),
    }


def _schedule_schema() -> JsonSchema:
    return {
        "type": "object",
        "description": "When the workflow runs by itself; applied by `spane schedule apply`.",
        "properties": {
            "name": {
                "type": "string",
                "pattern": SCHEDULE_NAME_PATTERN,
                "description": "Unique among schedules (default: the workflow's name, then "
                "<name>-2, <name>-3 ...).",
            },
            "cron": {
                "type": "string",
                "description": "Five cron fields (minute hour day month weekday), or six with "
                "seconds last.",
            },
            "every": {
                "$ref": "#/$defs/duration",
                "description": "A fixed interval (at least 1s), aligned to the Unix epoch.",
            },
            "timezone": {
                "type": "string",
                "default": "UTC",
                "description": "IANA zone the cron fields are read in.",
            },
            "input": {
                "type": "object",
                "description": "The execution's input; templates see `schedule.fire_time`, "
                "`schedule.date`, `schedule.local_time`, `schedule.name`.",
            },
            "overlap": {
                "enum": list(OVERLAP_POLICIES),
                "default": "allow",
                "description": "While the previous execution is open: allow, "
                "forbid (skip the fire) or replace (cancel it).",
            },
            "misfire": {
                "enum": list(MISFIRE_POLICIES),
                "default": "once",
                "description": "Fires missed while no worker ran: skip, once (the latest runs) "
                "or all.",
            },
            "starting_deadline": {
                "$ref": "#/$defs/duration",
                "description": "A fire not started this long after its time is missed.",
            },
            "max_parallel": {
                "type": "integer",
                "minimum": 1,
                "default": 1,
                "description": "Backfill: executions open at a time.",
            },
        },
        "additionalProperties": False,
    }


def _node_schema() -> JsonSchema:
    return {
        "type": "object",
        "description": "One step of the DAG.",
        "properties": {
            "type": {
                "description": "The node type: a built-in or one from the `spane.nodes` "
                "entry points.",
                "type": "string",
            },
            "description": {"type": "string", "description": "What the node does."},
            "needs": {
                "type": "array",
                "items": {"type": "string", "pattern": NODE_ID_PATTERN},
                "uniqueItems": True,
                "default": [],
                "description": "Parent node ids; none makes this an entry node.",
            },
            "config": {"type": "object", "description": "Settings of the node type."},
            "when": {
                "type": "string",
                "description": "A bare expression; false skips the node.",
            },
            "trigger": {
                "enum": list(TRIGGER_RULES),
                "default": "all_success",
                "description": "Airflow trigger rule over the parents.",
            },
            "retry": {"$ref": "#/$defs/retry"},
            "timeout": {"$ref": "#/$defs/duration", "description": "Per-attempt time limit."},
            "queue": {"$ref": "#/$defs/queue"},
            "priority": {"$ref": "#/$defs/priority"},
            "continue_on_fail": {
                "type": "boolean",
                "default": False,
                "description": "A failure counts as success for dependents and the execution "
                "(output null).",
            },
            "foreach": {
                "description": "An expression giving a list (or a literal list); the node runs "
                "once per item.",
                "type": ["string", "array"],
            },
            "max_parallel": {
                "type": "integer",
                "minimum": 1,
                "description": "How many foreach items run at once.",
            },
            "pool": {
                "$ref": "#/$defs/pool_name",
                "description": "A concurrency pool: the node "
                "(each foreach item) runs only while it holds one of the pool's slots.",
            },
            "mutex": {
                "$ref": "#/$defs/pool_name",
                "description": "A pool of size 1: at most one "
                "node holding this name runs at a time, across every execution.",
            },
            "rate_limit": {
                "$ref": "#/$defs/rate",
                "description": "Starts of this node (each foreach item) across every execution "
                "and worker, at most: 10/s, 100/min, 5/30s.",
            },
            "on_exit": {
                "type": "boolean",
                "default": False,
                "description": "An exit handler: runs once every other node has ended, with "
                "workflow.status and workflow.failures in scope.",
            },
        },
        "required": ["type"],
        "additionalProperties": False,
    }


def workflow_schema(config_schemas: Mapping[str, JsonSchema] | None = None) -> JsonSchema:
    """The schema for a workflow file; `config_schemas` adds third-party node types."""
    types = dict(BUILTIN_CONFIG_SCHEMAS)
    if config_schemas:
        types.update(config_schemas)
    defs = _defs()
    node = defs["node"]
    node["properties"]["type"]["enum"] = sorted(types)
    node["allOf"] = [
        {
            "if": {"properties": {"type": {"const": name}}, "required": ["type"]},
            "then": {"properties": {"config": schema}},
        }
        for name, schema in sorted(types.items())
    ]
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "spane workflow",
        "description": "A DAG of nodes run by spane (language version 1).",
        "type": "object",
        "properties": {
            "version": {"const": 1, "description": "Language version; always 1."},
            "name": {
                "type": "string",
                "pattern": WORKFLOW_NAME_PATTERN,
                "description": "Lowercase name, unique per registered workflow.",
            },
            "description": {"type": "string", "description": "What the workflow does."},
            "inputs": {
                "type": "object",
                "propertyNames": {"pattern": NODE_ID_PATTERN},
                "additionalProperties": {"$ref": "#/$defs/input"},
                "description": "Inputs of an execution, by name.",
            },
            "defaults": {
                "type": "object",
                "description": "Merged into every node unless the node sets its own.",
                "properties": {
                    "retry": {
                        "$ref": "#/$defs/retry",
                        "description": "The retry policy of every node without its own.",
                    },
                    "timeout": {
                        "$ref": "#/$defs/duration",
                        "description": "The per-attempt time limit of every node without its own.",
                    },
                    "queue": {
                        "$ref": "#/$defs/queue",
                        "description": "The queue of every node without its own.",
                    },
                    "priority": {
                        "$ref": "#/$defs/priority",
                        "description": "The priority of every node without its own.",
                    },
                    "pool": {"$ref": "#/$defs/pool_name"},
                    "mutex": {"$ref": "#/$defs/pool_name"},
                    "rate_limit": {
                        "$ref": "#/$defs/rate",
                        "description": "The rate limit of every node without its own (each "
                        "node counted on its own).",
                    },
                },
                "additionalProperties": False,
            },
            "timeout": {
                "$ref": "#/$defs/duration",
                "description": "Time limit of the whole execution.",
            },
            "output": {
                "description": "The execution's output (templates); default {leaf_id: output}.",
            },
            "priority": {
                "$ref": "#/$defs/priority",
                "description": "The priority of every node without its own or one in `defaults`.",
            },
            "max_active": {
                "type": "integer",
                "minimum": 1,
                "description": "Open executions of this workflow at most; the others wait "
                "pending and start in creation order.",
            },
            "pools": {
                "type": "object",
                "propertyNames": {"pattern": POOL_NAME_PATTERN},
                "additionalProperties": {"type": "integer", "minimum": 1},
                "description": "Sizes of the pools its nodes use; `spane pool set` overrides.",
            },
            "rate_limits": {
                "type": "object",
                "propertyNames": {"pattern": LIMIT_KEY_PATTERN},
                "additionalProperties": {"$ref": "#/$defs/rate"},
                "description": "Rate limits by key: workflow, type:NAME, queue:NAME, "
                "host:NAME (an http node's URL host).",
            },
            "circuit_breakers": {
                "type": "object",
                "propertyNames": {"anyOf": [{"pattern": BREAKER_HOST_PATTERN}, {"const": "*"}]},
                "additionalProperties": {"$ref": "#/$defs/circuit_breaker"},
                "description": "Circuit breakers of the hosts its http nodes call, by host "
                "(or * for each host on its own).",
            },
            "fail_fast": {
                "type": "boolean",
                "default": False,
                "description": "After the first node that fails for good, no new node starts "
                "(running ones finish, the others are skipped); exit handlers still run.",
            },
            "schedule": {
                "description": "One schedule, or a list of them.",
                "anyOf": [
                    {"$ref": "#/$defs/schedule"},
                    {"type": "array", "items": {"$ref": "#/$defs/schedule"}, "minItems": 1},
                ],
            },
            "nodes": {
                "type": "object",
                "minProperties": 1,
                "propertyNames": {"pattern": NODE_ID_PATTERN},
                "additionalProperties": {"$ref": "#/$defs/node"},
                "description": "The DAG: node id -> node.",
            },
        },
        "required": ["version", "name", "nodes"],
        "additionalProperties": False,
        "$defs": defs,
    }
