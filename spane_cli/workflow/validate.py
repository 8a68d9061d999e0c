"""Every check of SPEC §1 "Validation", reporting all problems at once with locations."""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import jinja2.meta
import jinja2.nodes
import jsonschema
from jsonschema import Draft202012Validator

from spane_cli.workflow import expressions, inputs, template_checks
from spane_cli.workflow.dag import find_cycle
from spane_cli.workflow.limits import url_host
from spane_cli.workflow.loader import LoadedDocument, LoadFailed, Locations, load_document
from spane_cli.workflow.model import Workflow, build_workflow
from spane_cli.workflow.node_configs import JsonSchema
from spane_cli.workflow.problems import Path, Problem, format_path
from spane_cli.workflow.schedule_spec import schedule_entries, schedule_problems
from spane_cli.workflow.schema import RETRY_WHEN_NAMES, workflow_schema
from spane_cli.workflow.schema_problems import (
    describe,
    did_you_mean,
    json_type_of,
    schema_problems,
)

MAX_NESTING = 10
# Validators built, by the node types they know: building one costs more than a small file's
# whole check, and a process sees one set of plugins (tests a few).
_VALIDATORS: dict[str, Draft202012Validator] = {}
_VALIDATORS_KEPT = 8


@dataclass
class ValidationResult:
    """The outcome for one file: problems, or the workflow and its sub-workflows."""

    file: str
    problems: list[Problem] = field(default_factory=list)
    workflow: Workflow | None = None
    # Sub-workflow files referenced from this one (transitively), by absolute path.
    subworkflows: dict[str, Workflow] = field(default_factory=dict)
    # The parsed data of this file and of every sub-workflow file, by absolute path, so that
    # `spane run` registers what was validated without reading the files again.
    documents: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems


def _validator(config_schemas: Mapping[str, JsonSchema]) -> Draft202012Validator:
    # Keyed by content: callers build a fresh mapping each time (the registry does).
    key = json.dumps(config_schemas, sort_keys=True, default=repr)
    validator = _VALIDATORS.get(key)
    if validator is None:
        if len(_VALIDATORS) >= _VALIDATORS_KEPT:
            _VALIDATORS.clear()
        validator = _VALIDATORS[key] = Draft202012Validator(workflow_schema(config_schemas))
    return validator


def bare_expression(text: str) -> str:
    """`when: "{{ x > 1 }}"` is accepted as the bare expression `x > 1`."""
    stripped = text.strip()
    if stripped.startswith("{{") and stripped.endswith("}}") and stripped.count("{{") == 1:
        return stripped[2:-2].strip()
    return text


class _Checker:
    def __init__(
        self,
        doc: LoadedDocument,
        config_schemas: Mapping[str, JsonSchema],
        stack: tuple[str, ...],
    ) -> None:
        self.doc = doc
        self.config_schemas = config_schemas
        self.file = doc.file
        self.locations: Locations = doc.locations
        self.problems: list[Problem] = []
        self.stack = stack
        self.subworkflows: dict[str, Workflow] = {}
        self.documents: dict[str, Any] = {}

    def add(self, path: Path, message: str, *, key: bool = False) -> None:
        line, column = self.locations.of(path, key=key)
        self.problems.append(Problem(self.file, line, column, format_path(path), message))

    def add_finding(self, path: Path, template: str, finding: template_checks.Finding) -> None:
        """A template's problem at the text it is about when that can be found in the file
        (a filter's name on the third line of a `run: |` block), else at the template."""
        line, column = self.locations.of(path)
        # In a `|` block the template's line is the file's: look from there on.
        in_block = _line_of_block(self.doc.text, line, column, finding.line)
        if in_block is not None:
            line, column = in_block
        found = None
        if finding.where is not None:
            found = _search_from(self.doc.text, line, column, finding.where, len(template))
        if found is not None:
            line, column = found
        message = f"{describe(path)}: {finding.message}"
        self.problems.append(Problem(self.file, line, column, format_path(path), message))

    # -- JSON Schema -------------------------------------------------------------------------

    def check_schema(self, data: Any) -> None:
        for error in _validator(self.config_schemas).iter_errors(data):
            for path, message, key in schema_problems(error):
                self.add(path, message, key=key)

    def check_numbers(self, value: Any, path: Path) -> None:
        """`.inf` and `.nan` are YAML floats that JSON (and so storage) cannot carry."""
        if isinstance(value, float) and not math.isfinite(value):
            self.add(path, f"{describe(path)}: {value} is not allowed: numbers must be finite")
        elif isinstance(value, dict):
            for key, item in value.items():
                self.check_numbers(item, (*path, key))
        elif isinstance(value, list):
            for index, item in enumerate(value):
                self.check_numbers(item, (*path, index))

    # -- graph rules -------------------------------------------------------------------------

    def check_graph(self, nodes: Mapping[str, Any]) -> None:
        needs: dict[str, list[str]] = {}
        for node_id, node in nodes.items():
            raw = node.get("needs") if isinstance(node, dict) else None
            parents = [p for p in raw if isinstance(p, str)] if isinstance(raw, list) else []
            needs[node_id] = parents
            for index, parent in enumerate(parents):
                if parent not in nodes:
                    hint = did_you_mean(parent, list(nodes))
                    self.add(
                        ("nodes", node_id, "needs", index),
                        f"node {node_id!r} needs unknown node {parent!r}{hint}",
                    )
        cycle = find_cycle(needs)
        if cycle:
            self.add(
                ("nodes", cycle[0]),
                "cycle in needs: " + " -> ".join(cycle),
                key=True,
            )
        self._check_exit_handlers(nodes, needs)
        for node_id, node in nodes.items():
            if isinstance(node, dict) and node.get("type") == "branch":
                self._check_branch(node_id, node, needs)
            if isinstance(node, dict) and "pool" in node and "mutex" in node:
                self.add(
                    ("nodes", node_id, "mutex"),
                    f"node {node_id!r}: pool and mutex exclude each other (a mutex is a pool"
                    " of size 1)",
                    key=True,
                )
            if isinstance(node, dict) and "max_parallel" in node and "foreach" not in node:
                self.add(
                    ("nodes", node_id, "max_parallel"),
                    f"node {node_id!r}: max_parallel needs foreach",
                    key=True,
                )

    def _check_exit_handlers(
        self, nodes: Mapping[str, Any], needs: Mapping[str, list[str]]
    ) -> None:
        """Exit handlers form a graph of their own that starts once the main graph has ended:
        no edge may cross between the two except that implied start."""

        def is_exit(node_id: str) -> bool:
            node = nodes.get(node_id)
            return isinstance(node, dict) and node.get("on_exit") is True

        exits = [node_id for node_id in nodes if is_exit(node_id)]
        if not exits:
            return
        if len(exits) == len(nodes):
            self.add(
                ("nodes", exits[0], "on_exit"),
                "every node is an exit handler: the main graph needs at least one node",
            )
        for node_id, parents in needs.items():
            for index, parent in enumerate(parents):
                if parent not in nodes or is_exit(parent) == is_exit(node_id):
                    continue
                path = ("nodes", node_id, "needs", index)
                if is_exit(node_id):
                    self.add(
                        path,
                        f"exit handler {node_id!r} needs {parent!r}, which is not an exit "
                        "handler: an exit handler without needs runs once every other node "
                        "has ended",
                    )
                else:
                    self.add(
                        path,
                        f"node {node_id!r} needs exit handler {parent!r}: exit handlers run "
                        "after every other node has ended",
                    )
        for node_id in exits:
            node = nodes[node_id]
            if "trigger" in node and not needs.get(node_id):
                self.add(
                    ("nodes", node_id, "trigger"),
                    f"exit handler {node_id!r} has no needs: it runs whatever the main graph "
                    "did, so there is no trigger rule to apply (use when: over "
                    "workflow.status)",
                    key=True,
                )

    def _check_branch(self, node_id: str, node: dict, needs: Mapping[str, list[str]]) -> None:
        config = node.get("config")
        if not isinstance(config, dict):
            return
        targets: list[tuple[Path, Any]] = []
        cases = config.get("cases")
        if isinstance(cases, list):
            for i, case in enumerate(cases):
                nxt = case.get("next") if isinstance(case, dict) else None
                if isinstance(nxt, list):
                    targets += [(("cases", i, "next", j), t) for j, t in enumerate(nxt)]
        default = config.get("default")
        if isinstance(default, list):
            targets += [(("default", j), t) for j, t in enumerate(default)]
        for sub_path, target in targets:
            path = ("nodes", node_id, "config", *sub_path)
            if not isinstance(target, str):
                continue
            if target not in needs:
                hint = did_you_mean(target, list(needs))
                self.add(path, f"branch {node_id!r} targets unknown node {target!r}{hint}")
            elif node_id not in needs[target]:
                self.add(
                    path,
                    f"branch {node_id!r} targets {target!r}, which does not need {node_id!r}: "
                    "the branch cannot reach it (add it to needs)",
                )

    # -- expressions -------------------------------------------------------------------------

    def check_expressions(self, data: Mapping[str, Any]) -> None:
        node_ids = set(data["nodes"]) if isinstance(data.get("nodes"), dict) else set()
        self._walk_templates(data.get("output"), ("output",), node_ids)
        defaults = data.get("defaults")
        if isinstance(defaults, dict):
            self._check_retry_when(defaults.get("retry"), ("defaults", "retry", "when"))
        nodes = data.get("nodes")
        if not isinstance(nodes, dict):
            return
        for node_id, node in nodes.items():
            if not isinstance(node, dict):
                continue
            base: Path = ("nodes", node_id)
            self._check_retry_when(node.get("retry"), (*base, "retry", "when"))
            when = node.get("when")
            if isinstance(when, str):
                self._check_bare(when, (*base, "when"), node_ids)
            foreach = node.get("foreach")
            if isinstance(foreach, str):
                if expressions.is_template(foreach):
                    self._walk_templates(foreach, (*base, "foreach"), node_ids)
                else:
                    self._check_bare(foreach, (*base, "foreach"), node_ids)
            config = node.get("config")
            if not isinstance(config, dict):
                continue
            if node.get("type") == "branch" and isinstance(config.get("cases"), list):
                for i, case in enumerate(config["cases"]):
                    if isinstance(case, dict) and isinstance(case.get("when"), str):
                        path = (*base, "config", "cases", i, "when")
                        self._check_bare(case["when"], path, node_ids)
                rest = {k: v for k, v in config.items() if k != "cases"}
                self._walk_templates(rest, (*base, "config"), node_ids)
            else:
                self._walk_templates(config, (*base, "config"), node_ids)

    def _check_retry_when(self, retry: Any, path: Path) -> None:
        """`retry.when` sees the failure only: a name outside it would fail every retry."""
        when = retry.get("when") if isinstance(retry, dict) else None
        if not isinstance(when, str):
            return
        source = bare_expression(when)
        problem = expressions.syntax_error(source, bare=True)
        if problem:
            self.add(path, f"{describe(path)}: {problem}")
            return
        tree = expressions.environment().parse(f"{{{{ {source} }}}}")
        for name in sorted(jinja2.meta.find_undeclared_variables(tree)):
            if name not in RETRY_WHEN_NAMES:
                hint = did_you_mean(name, list(RETRY_WHEN_NAMES)) or (
                    " (it can use " + ", ".join(RETRY_WHEN_NAMES) + ")"
                )
                self.add(path, f"{describe(path)}: unknown name {name!r}{hint}")

    def _check_bare(self, text: str, path: Path, node_ids: set[str]) -> None:
        source = bare_expression(text)
        problem = expressions.syntax_error(source, bare=True)
        if problem:
            self.add(path, f"{describe(path)}: {problem}")
            return
        template = f"{{{{ {source} }}}}"
        self._check_parsed(template, expressions.environment().parse(template), path, node_ids)

    def _walk_templates(self, value: Any, path: Path, node_ids: set[str]) -> None:
        if isinstance(value, str):
            if expressions.is_template(value):
                tree, problem, error_line = expressions.parsed(value)
                if tree is None:
                    self._add_syntax_problem(value, str(problem), error_line, path)
                else:
                    self._check_parsed(value, tree, path, node_ids)
        elif isinstance(value, dict):
            for key, item in value.items():
                self._walk_templates(item, (*path, key), node_ids)
        elif isinstance(value, list):
            for index, item in enumerate(value):
                self._walk_templates(item, (*path, index), node_ids)

    def _add_syntax_problem(self, template: str, problem: str, line: int, path: Path) -> None:
        shell = len(path) >= 4 and path[2] == "config" and path[3] in ("run", "args")
        hint = template_checks.syntax_hint(template, problem, shell=shell)
        if hint is None:
            finding = template_checks.Finding(problem, None, line)
        else:
            finding = template_checks.Finding(f"{problem} ({hint.message})", hint.where, line)
        self.add_finding(path, template, finding)

    def _check_parsed(
        self, template: str, tree: jinja2.nodes.Template, path: Path, node_ids: set[str]
    ) -> None:
        environment = expressions.environment()
        for finding in template_checks.unknown_names(tree, environment.filters, environment.tests):
            self.add_finding(path, template, finding)
        swallowed = template_checks.swallowed_by_comment(template, environment)
        if swallowed is not None:
            self.add_finding(path, template, swallowed)
        self._check_references(tree, path, node_ids)

    def _check_references(
        self, tree: jinja2.nodes.Template, path: Path, node_ids: set[str]
    ) -> None:
        if not node_ids:
            return
        for ref in _node_references(tree):
            if ref not in node_ids:
                hint = did_you_mean(ref, sorted(node_ids))
                self.add(path, f"{describe(path)}: expression refers to unknown node {ref!r}{hint}")

    # -- inputs ------------------------------------------------------------------------------

    def check_inputs(self, inputs: Any) -> None:
        if not isinstance(inputs, dict):
            return
        for name, spec in inputs.items():
            if not isinstance(spec, dict):
                continue
            keywords = {
                k: v for k, v in spec.items() if k not in ("default", "required", "description")
            }
            try:
                Draft202012Validator.check_schema(keywords)
            except jsonschema.SchemaError as exc:
                if not any(p.path.startswith(f"inputs.{name}.") for p in self.problems):
                    self.add(("inputs", name), f"input {name!r}: invalid schema: {exc.message}")
                continue
            if "default" in spec:
                for error in Draft202012Validator(keywords).iter_errors(spec["default"]):
                    self.add(
                        ("inputs", name, "default"),
                        f"input {name!r}: default {spec['default']!r} is invalid: {error.message}",
                    )

    # -- sub-workflows -----------------------------------------------------------------------

    def check_subworkflows(self, nodes: Mapping[str, Any]) -> None:
        base_dir = os.path.dirname(os.path.abspath(self.file))
        for node_id, node in nodes.items():
            if not isinstance(node, dict) or node.get("type") != "workflow":
                continue
            config = node.get("config")
            ref = config.get("workflow") if isinstance(config, dict) else None
            if not isinstance(ref, str) or not is_file_reference(ref):
                continue
            path = ("nodes", node_id, "config", "workflow")
            target = os.path.normpath(os.path.join(base_dir, ref))
            if target in self.stack:
                chain = " -> ".join(os.path.basename(p) for p in (*self.stack, target))
                self.add(path, f"sub-workflow reference cycle: {chain}")
                continue
            if len(self.stack) >= MAX_NESTING:
                self.add(path, f"sub-workflows nest deeper than {MAX_NESTING} levels")
                continue
            if not os.path.exists(target):
                self.add(path, f"sub-workflow file {ref!r} does not exist (looked for {target})")
                continue
            # Problems in the child name it as the user would reach it from this file.
            shown = os.path.normpath(os.path.join(os.path.dirname(self.file), ref))
            child = validate_file(shown, self.config_schemas, _stack=self.stack)
            if child.problems:
                count = len(child.problems)
                noun = "problem" if count == 1 else "problems"
                self.add(path, f"sub-workflow {ref!r} is invalid ({count} {noun})")
                self.problems.extend(child.problems)
            elif child.workflow is not None:
                self._check_child_input(node_id, ref, config or {}, child.workflow)
                self.subworkflows[target] = child.workflow
                self.subworkflows.update(child.subworkflows)
                self.documents.update(child.documents)

    # -- schedules ---------------------------------------------------------------------------

    def check_schedules(self, data: Mapping[str, Any]) -> None:
        raw = data.get("schedule")
        if raw is None or not isinstance(data.get("name"), str):
            return
        seen: set[str] = set()
        listed = isinstance(raw, list)
        for index, (name, entry) in enumerate(schedule_entries(data["name"], raw)):
            base: Path = ("schedule", index) if listed else ("schedule",)
            if name in seen:
                self.add(base, f"schedule {name!r} is declared twice")
            seen.add(name)
            for key, message in schedule_problems(entry):
                self.add((*base, key) if key else base, message)
            self._walk_templates(entry.get("input"), (*base, "input"), set())

    def check_hosts(self, data: Mapping[str, Any], nodes: Mapping[str, Any]) -> None:
        """A `host:` rate limit or a breaker of a host that no http node of the file names in
        its URL as written would never apply: a host rendered from a template is not known
        before the node runs, so neither counts it."""
        called: set[str] = set()
        for node in nodes.values():
            if isinstance(node, dict) and node.get("type") == "http":
                config = node.get("config")
                host = url_host(config) if isinstance(config, dict) else None
                if host is not None:
                    called |= {host, host.split(":", 1)[0]}
        limits = data.get("rate_limits")
        if isinstance(limits, dict):
            for key in limits:
                if isinstance(key, str) and key.startswith("host:") and key[5:] not in called:
                    self.add(("rate_limits", key), _unused_host(key[5:], "rate limit"), key=True)
        breakers = data.get("circuit_breakers")
        if isinstance(breakers, dict):
            for host in breakers:
                if isinstance(host, str) and _HOST_KEY.match(host) and host not in called:
                    self.add(("circuit_breakers", host), _unused_host(host, "breaker"), key=True)

    def _check_child_input(
        self, node_id: str, ref: str, config: Mapping[str, Any], child: Workflow
    ) -> None:
        """The parts of `input:` written out (not templates) against the child's `inputs`:
        its keys for missing and unknown inputs, each plain value for its type. Templated
        values are checked when the child starts."""
        given = config.get("input")
        if given is not None and not isinstance(given, dict):
            return  # the config schema reports it
        given = given or {}
        if any(_holds_template(name) for name in given):
            return  # the names themselves are known only when the child starts
        base: Path = ("nodes", node_id, "config")
        prefix = f"node {node_id!r}: sub-workflow {ref!r}: "
        for problem in inputs.missing_inputs(child.inputs, list(given)):
            self.add((*base, "input") if "input" in config else base, prefix + problem, key=True)
        for name, problem in inputs.unknown_inputs(child.inputs, list(given)):
            self.add((*base, "input", name), prefix + problem, key=True)
        for spec in child.inputs:
            value = given.get(spec.name)
            if spec.name not in given or _holds_template(value):
                continue
            for problem in inputs.value_problems(spec, inputs.as_declared(spec, value)):
                self.add((*base, "input", spec.name), prefix + problem)


# A breaker key the schema takes (others get its problem alone); `*` is every host.
_HOST_KEY = re.compile(r"^[A-Za-z0-9.-]+(:[0-9]+)?$")


def _unused_host(host: str, what: str) -> str:
    return (
        f"no http node of this file calls host {host!r} in its URL as written, so this {what}"
        " never applies (a host rendered from a template is not known before the node runs)"
    )


def _holds_template(value: Any) -> bool:
    if isinstance(value, str):
        return expressions.is_template(value)
    if isinstance(value, dict):
        return any(_holds_template(k) or _holds_template(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_holds_template(v) for v in value)
    return False


def _search_from(
    text: str, line: int, column: int, pattern: re.Pattern[str], template_size: int
) -> tuple[int, int] | None:
    """The 1-based line and column of `pattern`'s first match in `text` from `line:column`
    on, within about the span the template takes in the file."""
    starts = [0]
    starts += [m.end() for m in re.finditer("\n", text)]
    if line > len(starts):
        return None
    offset = starts[line - 1] + column - 1
    found = pattern.search(text, offset, offset + 2 * template_size + 200)
    if found is None:
        return None
    at = found.start(found.lastindex) if found.lastindex else found.start()
    found_line = text.count("\n", 0, at) + 1
    return found_line, at - starts[found_line - 1] + 1


def _line_of_block(text: str, line: int, column: int, template_line: int) -> tuple[int, int] | None:
    """Where line `template_line` of a literal block scalar (`run: |`) that starts at
    `line:column` is in the file (its first line is the one after the `|`); None when the
    value is no such block, and for its first line, which a look from the `|` finds."""
    lines = text.split("\n")
    if template_line < 2 or line > len(lines) or lines[line - 1][column - 1 : column] != "|":
        return None
    target = line + template_line
    if target > len(lines):
        return None
    content = lines[target - 1]
    return target, len(content) - len(content.lstrip(" ")) + 1


def is_file_reference(ref: str) -> bool:
    """A path (`./child.yaml`, `sub/x.yml`) rather than the name of a registered workflow."""
    return ref.endswith((".yaml", ".yml")) or "/" in ref or os.sep in ref


def _node_references(tree: jinja2.nodes.Node) -> Iterator[str]:
    for getattr_node in tree.find_all(jinja2.nodes.Getattr):
        target = getattr_node.node
        if isinstance(target, jinja2.nodes.Name) and target.name == "nodes":
            yield getattr_node.attr
    for getitem in tree.find_all(jinja2.nodes.Getitem):
        target = getitem.node
        arg = getitem.arg
        if (
            isinstance(target, jinja2.nodes.Name)
            and target.name == "nodes"
            and isinstance(arg, jinja2.nodes.Const)
            and isinstance(arg.value, str)
        ):
            yield arg.value


def validate_document(
    doc: LoadedDocument,
    config_schemas: Mapping[str, JsonSchema],
    _stack: tuple[str, ...] = (),
) -> ValidationResult:
    """Check one loaded document. `config_schemas` are the `config` schemas of the node types
    installed beside the built-ins (plugins), by type name: the workflow language does not
    know where node types come from, so the caller says which exist."""
    checker = _Checker(doc, config_schemas, (*_stack, os.path.normpath(os.path.abspath(doc.file))))
    checker.problems.extend(doc.problems)
    data = doc.data
    if not isinstance(data, dict):
        checker.add((), f"a workflow must be a mapping, got {json_type_of(data)}")
        return ValidationResult(doc.file, checker.problems)
    checker.check_schema(data)
    checker.check_numbers(data, ())
    raw_nodes = data.get("nodes")
    nodes = {k: v for k, v in raw_nodes.items()} if isinstance(raw_nodes, dict) else {}
    checker.check_graph(nodes)
    checker.check_expressions({**data, "nodes": nodes})
    checker.check_inputs(data.get("inputs"))
    checker.check_subworkflows(nodes)
    checker.check_schedules(data)
    checker.check_hosts(data, nodes)
    problems = _dedupe(checker.problems)
    if problems:
        return ValidationResult(doc.file, problems)
    workflow = build_workflow(data, source_file=os.path.abspath(doc.file))
    documents = {**checker.documents, os.path.normpath(os.path.abspath(doc.file)): data}
    return ValidationResult(doc.file, [], workflow, checker.subworkflows, documents)


def validate_file(
    file: str,
    config_schemas: Mapping[str, JsonSchema],
    _stack: tuple[str, ...] = (),
) -> ValidationResult:
    """Load and check one workflow file; never raises for bad input. `config_schemas`: the
    plugin node types' config schemas, as for `validate_document`."""
    try:
        doc = load_document(file)
    except LoadFailed as failed:
        return ValidationResult(file, failed.problems)
    return validate_document(doc, config_schemas, _stack)


def _dedupe(problems: list[Problem]) -> list[Problem]:
    seen: set[tuple[str, int, int, str]] = set()
    unique: list[Problem] = []
    for problem in problems:
        key = (problem.file, problem.line, problem.column, problem.message)
        if key not in seen:
            seen.add(key)
            unique.append(problem)
    return sorted(unique, key=lambda p: (p.file, p.line, p.column))
