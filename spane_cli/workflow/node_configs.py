"""The JSON Schema of each built-in node type's `config` (SPEC §1, built-in node types).

Kept as plain data, apart from the executors, so that `spane validate` and the schema file do
not import httpx or subprocess machinery. Third-party types declare `config_schema` on their
class and are merged in by the node registry.
"""

from __future__ import annotations

from typing import Any

JsonSchema = dict[str, Any]

_STRING_MAP: JsonSchema = {"type": "object", "additionalProperties": {"type": "string"}}
_DURATION_REF: JsonSchema = {"$ref": "#/$defs/duration"}

SHELL: JsonSchema = {
    "type": "object",
    "description": "Run a command: `run` through /bin/sh, or `args` as argv with no shell.",
    "properties": {
        "run": {
            "type": "string",
            "description": (
                "A script for /bin/sh -c; templates allowed. A value rendered into it is shell "
                "code: pass inputs through `| quote`, or use `args`."
            ),
        },
        "args": {
            "type": "array",
            "minItems": 1,
            "description": "argv without a shell; each item is rendered, then made a string.",
        },
        "env": {**_STRING_MAP, "description": "Extra environment variables (rendered)."},
        "cwd": {"type": "string", "description": "Working directory."},
        "parse": {
            "enum": ["json", "text"],
            "default": "text",
            "description": "`json`: parse stdout as JSON into output.json.",
        },
    },
    "oneOf": [{"required": ["run"]}, {"required": ["args"]}],
    "additionalProperties": False,
}

HTTP: JsonSchema = {
    "type": "object",
    "description": "Make one HTTP request with httpx.",
    "properties": {
        "url": {"type": "string", "description": "The URL; templates allowed."},
        "method": {
            "enum": ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"],
            "default": "GET",
            "description": "HTTP method.",
        },
        "headers": {**_STRING_MAP, "description": "Request headers (rendered)."},
        "json": {"description": "A JSON body (rendered)."},
        "body": {"type": "string", "description": "A raw text body (rendered)."},
        "params": {**_STRING_MAP, "description": "Query parameters."},
        "expect": {
            "type": "array",
            "items": {"type": "integer", "minimum": 100, "maximum": 599},
            "description": "Status codes that count as success (default: any 2xx).",
        },
        "timeout": {
            **_DURATION_REF,
            "default": "30s",
            "description": "Request timeout (never longer than the node's `timeout`).",
        },
    },
    "required": ["url"],
    "not": {"required": ["json", "body"]},
    "additionalProperties": False,
}

PYTHON: JsonSchema = {
    "type": "object",
    "description": (
        "Call a Python function: the rendered `kwargs` are its keyword arguments, and a "
        "parameter named `context` (or `ctx`) receives the context object (input, attempt, "
        "logger, secrets, cancel_requested). What it returns, JSON-able, is the node's output."
    ),
    "properties": {
        "function": {
            "type": "string",
            "pattern": r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$",
            "description": (
                "`package.module:callable`, imported on the worker: from installed packages, "
                "PYTHONPATH, or a `spane worker --path DIR` (`spane run --local --path DIR`)."
            ),
        },
        "kwargs": {
            "type": "object",
            "description": "The function's keyword arguments, each rendered (templates allowed).",
        },
    },
    "required": ["function"],
    "additionalProperties": False,
}

TRANSFORM: JsonSchema = {
    "type": "object",
    "description": "Build an output from expressions.",
    "properties": {
        "output": {"description": "A mapping (or any value) of templates, evaluated."},
    },
    "required": ["output"],
    "additionalProperties": False,
}

BRANCH: JsonSchema = {
    "type": "object",
    "description": "Choose which children run; children not chosen are skipped.",
    "properties": {
        "cases": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "when": {"type": "string", "description": "A bare expression."},
                    "next": {
                        "type": "array",
                        "items": {"type": "string"},
                        "description": "Node ids to run when this case is the first true one.",
                    },
                },
                "required": ["when", "next"],
                "additionalProperties": False,
            },
        },
        "default": {
            "type": "array",
            "items": {"type": "string"},
            "description": "Node ids to run when no case is true.",
        },
    },
    "required": ["cases"],
    "additionalProperties": False,
}

DELAY: JsonSchema = {
    "type": "object",
    "description": "Wait without holding a worker; passes its input through.",
    "properties": {
        "duration": {
            "$ref": "#/$defs/duration_or_template",
            "description": "How long to wait; a template (`{{ item }}`) is rendered when it runs.",
        },
        "until": {"type": "string", "description": "An ISO 8601 timestamp to wait for."},
    },
    "oneOf": [{"required": ["duration"]}, {"required": ["until"]}],
    "additionalProperties": False,
}

WORKFLOW: JsonSchema = {
    "type": "object",
    "description": "Run a sub-workflow; its output becomes this node's output.",
    "properties": {
        "workflow": {
            "type": "string",
            "description": "A path relative to this file, or the name of a registered workflow.",
        },
        "input": {"type": "object", "description": "The child's input (rendered)."},
    },
    "required": ["workflow"],
    "additionalProperties": False,
}

NOOP: JsonSchema = {
    "type": "object",
    "description": "Pass the input through.",
    "additionalProperties": False,
}

FAIL: JsonSchema = {
    "type": "object",
    "description": "Fail with a message (for tests and guards).",
    "properties": {
        "message": {
            "type": "string",
            "default": "failed by a fail node",
            "description": "The error (rendered).",
        }
    },
    "additionalProperties": False,
}

BUILTIN_CONFIG_SCHEMAS: dict[str, JsonSchema] = {
    "shell": SHELL,
    "http": HTTP,
    "python": PYTHON,
    "transform": TRANSFORM,
    "branch": BRANCH,
    "delay": DELAY,
    "workflow": WORKFLOW,
    "noop": NOOP,
    "fail": FAIL,
}
