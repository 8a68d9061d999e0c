"""`spane run`: validate, resolve inputs, register the workflow and its sub-workflows, create.

Sub-workflow files are read and registered here, with the parent, so workers never read
workflow files and may run anywhere.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from jsonschema import Draft202012Validator

from spane_cli.errors import NotFound, UsageError, WorkflowInvalid
from spane_cli.nodes.registry import third_party_config_schemas
from spane_cli.store.db import write_transaction
from spane_cli.store.queries import require_workflow_version
from spane_cli.store.records import Dispatch
from spane_cli.store.store import Store
from spane_cli.store.versions import latest_version_id, register_version
from spane_cli.workflow.loader import MAX_FILE_BYTES, LoadedDocument, LoadFailed, load_document
from spane_cli.workflow.model import InputSpec, Workflow, thaw
from spane_cli.workflow.problems import Problem, format_path
from spane_cli.workflow.validate import (
    ValidationResult,
    is_file_reference,
    validate_document,
    validate_file,
)


def resolve_inputs(workflow: Workflow, given: Mapping[str, Any]) -> dict[str, Any]:
    """Apply defaults, check required inputs and each input's schema; UsageError otherwise."""
    specs: dict[str, InputSpec] = {spec.name: spec for spec in workflow.inputs}
    unknown = sorted(set(given) - set(specs))
    if unknown and specs:
        raise UsageError(f"unknown input {unknown[0]!r}; inputs are: {', '.join(specs)}")
    resolved: dict[str, Any] = dict(given)
    problems: list[str] = []
    for name, spec in specs.items():
        if name not in resolved:
            if spec.has_default:
                resolved[name] = spec.default
                continue
            if spec.required:
                problems.append(f"missing required input {name!r}")
            continue
        value = resolved[name]
        schema = thaw(spec.schema)
        if schema.get("type") == "string" and not isinstance(value, str):
            # JSON's spelling, not Python's: true, null, 1.5 (never True or None).
            value = resolved[name] = json.dumps(value)
        for error in Draft202012Validator(schema).iter_errors(value):
            problems.append(f"input {name!r}: {error.message}")
    if problems:
        raise UsageError("; ".join(problems))
    return resolved


def register_file(store: Store, path: str, documents: Mapping[str, Any] | None = None) -> int:
    """Register `path` and, first, every sub-workflow file it references; the version id.
    `documents` holds data already parsed by validation, by absolute path."""
    path = os.path.normpath(os.path.abspath(path))
    known = (documents or {}).get(path)
    data = known if known is not None else load_document(path).data
    refs: dict[str, int] = {}
    base = os.path.dirname(path)
    for node in (data.get("nodes") or {}).values():
        if node.get("type") != "workflow":
            continue
        reference = node["config"]["workflow"]
        if reference in refs:
            continue
        if is_file_reference(reference):
            refs[reference] = register_file(
                store, os.path.normpath(os.path.join(base, reference)), documents
            )
        else:
            latest = latest_version_id(reference)
            if latest is None:
                raise NotFound(f"no registered workflow named {reference!r}")
            refs[reference] = latest
    return int(register_version(store.database, data["name"], data, refs).id)


def validated_file(file: str) -> ValidationResult:
    """`file` checked against the node types installed here (built-ins and plugins); raises
    WorkflowInvalid, with every problem, when it is not valid."""
    result = validate_file(file, third_party_config_schemas())
    if result.workflow is None:
        raise WorkflowInvalid(result.problems)
    return result


def submit(
    store: Store,
    file: str,
    given_inputs: Mapping[str, Any],
    *,
    idempotency_key: str | None = None,
) -> tuple[str, bool, list[Dispatch]]:
    """Validate `file` and submit it: (execution id, created?, dispatches)."""
    return submit_validated(
        store, validated_file(file), given_inputs, idempotency_key=idempotency_key
    )


MAX_IDEMPOTENCY_KEY = 255  # the column's size


def check_idempotency_key(key: str | None) -> None:
    """Refused before anything is written: too long for its column, or not one line."""
    if key is None:
        return
    if not key or len(key) > MAX_IDEMPOTENCY_KEY:
        raise UsageError(
            f"the idempotency key must be 1 to {MAX_IDEMPOTENCY_KEY} characters, not {len(key)}"
        )
    if not key.isprintable():
        raise UsageError("the idempotency key must be printable text on one line")


def submit_validated(
    store: Store,
    validated: ValidationResult,
    given_inputs: Mapping[str, Any],
    *,
    idempotency_key: str | None = None,
) -> tuple[str, bool, list[Dispatch]]:
    """Submit a file `validated_file` accepted, without reading or checking it again."""
    if validated.workflow is None:
        raise WorkflowInvalid(validated.problems)
    check_idempotency_key(idempotency_key)
    inputs = resolve_inputs(validated.workflow, given_inputs)
    # One transaction for the version lookup and the execution: a commit fewer per run, and a
    # version registered here never stays behind without the execution it was made for.
    with write_transaction(store.database):
        version_id = register_file(store, validated.file, validated.documents)
        return store.create_execution(version_id, inputs, idempotency_key=idempotency_key)


UPLOADED_FILE = "workflow.yaml"  # the name problems carry when an upload names none


def validated_text(text: str, file: str | None = None) -> ValidationResult:
    """An uploaded workflow document checked as `spane validate` checks a file, its problems
    named FILE:LINE:COL with `file` (a bare file name). The document may name registered
    workflows as sub-workflows, not files: nothing of the server's disk is read for it.
    Raises WorkflowInvalid with every problem."""
    name = os.path.basename(file or "") or UPLOADED_FILE
    if len(text.encode("utf-8", "surrogatepass")) > MAX_FILE_BYTES:
        problem = Problem(name, 1, 1, "", f"file is larger than {MAX_FILE_BYTES // 1024} KiB")
        raise WorkflowInvalid([problem])
    try:
        document = load_document(name, text)
    except LoadFailed as failed:
        raise WorkflowInvalid(failed.problems) from None
    file_references = _file_references(document)
    if file_references:
        raise WorkflowInvalid(file_references)
    result = validate_document(document, third_party_config_schemas())
    if result.workflow is None:
        raise WorkflowInvalid(result.problems)
    return result


def _file_references(document: LoadedDocument) -> list[Problem]:
    nodes = document.data.get("nodes") if isinstance(document.data, dict) else None
    problems = []
    for node_id, node in (nodes or {}).items() if isinstance(nodes, dict) else ():
        config = node.get("config") if isinstance(node, dict) else None
        reference = config.get("workflow") if isinstance(config, dict) else None
        if (
            isinstance(reference, str)
            and node.get("type") == "workflow"
            and is_file_reference(reference)
        ):
            path = ("nodes", node_id, "config", "workflow")
            line, column = document.locations.of(path)
            problems.append(
                Problem(
                    document.file,
                    line,
                    column,
                    format_path(path),
                    f"an uploaded workflow cannot reference the file {reference!r}:"
                    " register the sub-workflow and name it instead",
                )
            )
    return problems


def submit_registered(
    store: Store,
    name: str,
    number: int | None,
    given_inputs: Mapping[str, Any],
    *,
    idempotency_key: str | None = None,
) -> tuple[str, bool, list[Dispatch]]:
    """A new execution of version `number` (the newest when None) of a registered workflow."""
    check_idempotency_key(idempotency_key)
    version = require_workflow_version(name, number)
    workflow = store.versions.get(int(version.id)).workflow
    inputs = resolve_inputs(workflow, given_inputs)
    return store.create_execution(int(version.id), inputs, idempotency_key=idempotency_key)
