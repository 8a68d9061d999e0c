"""Valid workflows: every example, every duration form and trigger rule, defaults merged."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import run_spane

from spane_cli.workflow.model import Backoff, RetryPolicy, TriggerRule, Workflow
from spane_cli.workflow.validate import validate_file

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO / "workflows").rglob("*.yaml"))
VALID = sorted((Path(__file__).parent / "files" / "valid").glob("*.yaml"))


def built(path: Path) -> Workflow:
    result = validate_file(str(path), {})
    assert result.problems == []
    assert result.workflow is not None
    return result.workflow


def test_examples_exist() -> None:
    names = {p.relative_to(REPO / "workflows").as_posix() for p in EXAMPLES}
    assert {"etl.yaml", "expense-approval.yaml", "subworkflow.yaml", "sub/greet.yaml"} <= names


@pytest.mark.parametrize("path", EXAMPLES + VALID, ids=lambda p: p.name)
def test_valid_file_passes_validate(path: Path) -> None:
    result = run_spane("validate", str(path))
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{path}: ok\n"
    assert result.stderr == ""
    built(path)


def test_subworkflow_is_validated_and_collected() -> None:
    result = validate_file(str(REPO / "workflows" / "subworkflow.yaml"), {})
    assert result.ok
    child = str(REPO / "workflows" / "sub" / "greet.yaml")
    assert set(result.subworkflows) == {child}
    assert result.subworkflows[child].name == "greet"


def test_every_duration_form() -> None:
    workflow = built(VALID[[p.name for p in VALID].index("durations.yaml")])
    nodes = workflow.nodes
    assert workflow.timeout == 172800
    assert nodes["seconds_int"].timeout == 12
    assert nodes["seconds_float"].timeout == 1.5
    assert nodes["minutes"].timeout == 300
    assert nodes["iso"].timeout == 300
    assert nodes["wait"].timeout == 90  # from defaults
    assert nodes["wait"].retry == RetryPolicy(
        attempts=3, backoff=Backoff.LINEAR, delay=0.5, max_delay=5400
    )


def test_every_trigger_rule() -> None:
    workflow = built(VALID[[p.name for p in VALID].index("triggers.yaml")])
    for rule in TriggerRule:
        assert workflow.nodes[rule.value].trigger is rule
        assert workflow.nodes[rule.value].needs == ("a", "b")
    assert workflow.nodes["a"].trigger is TriggerRule.ALL_SUCCESS


def test_foreach_and_max_parallel() -> None:
    nodes = built(VALID[[p.name for p in VALID].index("foreach.yaml")]).nodes
    assert nodes["per_item"].foreach == "{{ parents }}"
    assert nodes["per_item"].max_parallel == 2
    assert nodes["literal"].foreach == ["a", "b"]
    assert nodes["literal"].max_parallel is None
    assert nodes["bare"].foreach == "nodes.list.output"


def test_defaults_are_merged_unless_overridden() -> None:
    nodes = built(VALID[[p.name for p in VALID].index("defaults.yaml")]).nodes
    inherits, overrides = nodes["inherits"], nodes["overrides"]
    assert inherits.retry == RetryPolicy(
        attempts=4, backoff=Backoff.EXPONENTIAL, delay=2, max_delay=60
    )
    assert inherits.timeout == 600
    assert inherits.queue == "io"
    # A node's own retry replaces the default as a whole (attempts 1, no delay).
    assert overrides.retry == RetryPolicy(attempts=1)
    assert overrides.timeout == 30
    assert overrides.queue == "cpu"


def test_without_defaults_a_node_has_one_attempt_and_no_timeout() -> None:
    nodes = built(REPO / "workflows" / "delay.yaml").nodes
    assert nodes["start"].retry.attempts == 1
    assert nodes["start"].timeout is None
    assert nodes["start"].queue == "default"


def test_etl_data_shapes() -> None:
    workflow = built(VALID[[p.name for p in VALID].index("etl-shapes.yaml")])
    nodes = workflow.nodes
    assert workflow.entry_nodes == ("extract",)
    assert workflow.leaf_nodes == ("guard",)
    assert [spec.name for spec in workflow.inputs] == ["date", "limit"]
    date, limit = workflow.inputs
    assert date.required and not date.has_default
    assert limit.has_default and limit.default == 100 and dict(limit.schema)["minimum"] == 1
    assert workflow.timeout == 7200
    assert workflow.output == {"rows": "{{ nodes.load.output.rows }}"}
    assert nodes["check"].continue_on_fail is True
    assert nodes["load"].when == "nodes.check.status == 'succeeded'"
    assert nodes["alert"].trigger is TriggerRule.ONE_FAILED
    assert nodes["alert"].needs == ("extract", "transform")
    assert nodes["alert"].config["json"]["text"] == "etl failed"
    assert list(nodes["load"].config["args"]) == ["psql", "-c", "select 1"]
    assert workflow.children("extract") == ("transform", "alert", "per_item")
    assert list(nodes) == [
        "extract",
        "transform",
        "check",
        "load",
        "alert",
        "per_item",
        "summary",
        "guard",
    ]
