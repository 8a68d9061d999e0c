"""transform, branch, delay, workflow, noop and fail: executors that only render and decide."""

from __future__ import annotations

import time

from spane_cli.nodes.base import ChildRequest
from spane_cli.nodes.branch import BranchNode
from spane_cli.nodes.delay import DelayNode
from spane_cli.nodes.fail import FailNode
from spane_cli.nodes.noop import NoopNode
from spane_cli.nodes.transform import TransformNode
from spane_cli.nodes.workflow_call import WorkflowNode
from spane_cli.states import OutcomeKind


def test_transform_keeps_native_types_for_single_expressions(context_for):
    config = {
        "output": {
            "count": "{{ input.n }}",
            "label": "n={{ input.n }}",
            "rows": "{{ input.rows | map(attribute='id') | list }}",
            "nested": {"flag": "{{ input.n > 2 }}", "plain": 7},
            "listed": ["{{ input.n * 2 }}", "x"],
        }
    }
    result = TransformNode().run(context_for(config, input={"n": 3, "rows": [{"id": "a"}]}))
    assert result.outcome == OutcomeKind.SUCCEEDED
    assert result.output == {
        "count": 3,
        "label": "n=3",
        "rows": ["a"],
        "nested": {"flag": True, "plain": 7},
        "listed": [6, "x"],
    }


def test_transform_masks_secrets_and_names_the_field_on_errors(context_for):
    secrets = {"TOKEN": "s3cr3t-value"}
    masked = TransformNode().run(
        context_for({"output": {"t": "{{ secrets.TOKEN }}"}}, secrets=secrets)
    )
    assert masked.output == {"t": "***"}
    broken = TransformNode().run(context_for({"output": {"a": "{{ parents.x }}"}}, input={}))
    assert broken.outcome == OutcomeKind.FAILED
    assert broken.error.startswith("config.output: ")
    assert "parents.x" in broken.error


def test_branch_first_true_case_wins(context_for):
    config = {
        "cases": [
            {"when": "input.n > 10", "next": ["big"]},
            {"when": "{{ input.n > 1 }}", "next": ["medium", "audit"]},
            {"when": "input.n > 0", "next": ["small"]},
        ],
        "default": ["none"],
    }
    result = BranchNode().run(context_for(config, input={"n": 5}))
    assert result.outcome == OutcomeKind.SUCCEEDED
    assert result.chosen == ["medium", "audit"]
    assert result.output == {"chosen": ["medium", "audit"]}


def test_branch_default_when_no_case_is_true(context_for):
    config = {"cases": [{"when": "input.n > 10", "next": ["big"]}], "default": ["fallback"]}
    assert BranchNode().run(context_for(config, input={"n": 1})).chosen == ["fallback"]
    without_default = BranchNode().run(context_for({"cases": config["cases"]}, input={"n": 1}))
    assert without_default.chosen == []
    assert without_default.output == {"chosen": []}


def test_branch_error_names_the_case(context_for):
    config = {"cases": [{"when": "input.missing.deeper", "next": ["a"]}]}
    result = BranchNode().run(context_for(config, input={}))
    assert result.outcome == OutcomeKind.FAILED
    assert result.error.startswith("config.cases[0].when: ")


def test_delay_duration_waits_from_now(context_for):
    before = time.time()
    result = DelayNode().run(context_for({"duration": "1m30s"}, input={"keep": 1}))
    after = time.time()
    assert result.outcome == OutcomeKind.WAIT
    assert result.output == {"keep": 1}
    assert result.wait_until is not None
    assert before + 90 <= result.wait_until <= after + 90


def test_delay_until_a_timestamp(context_for):
    zulu = DelayNode().run(context_for({"until": "2030-01-02T03:04:05Z"}))
    assert zulu.outcome == OutcomeKind.WAIT
    assert zulu.wait_until == 1893553445.0
    naive = DelayNode().run(context_for({"until": "2030-01-02T03:04:05"}))
    assert naive.wait_until == 1893553445.0  # no zone means UTC
    offset = DelayNode().run(context_for({"until": "2030-01-02T05:04:05+02:00"}))
    assert offset.wait_until == 1893553445.0


def test_delay_in_the_past_still_waits_with_that_time(context_for):
    result = DelayNode().run(
        context_for({"until": "{{ input.at }}"}, input={"at": "2001-01-01T00:00:00Z"})
    )
    assert result.outcome == OutcomeKind.WAIT
    assert result.wait_until == 978307200.0


def test_delay_bad_timestamp_names_the_field(context_for):
    result = DelayNode().run(context_for({"until": "next tuesday"}))
    assert result.outcome == OutcomeKind.FAILED
    assert result.error.startswith("config.until: ")


def test_workflow_asks_for_a_child(context_for):
    config = {"workflow": "child.yaml", "input": {"x": "{{ input.n + 1 }}", "fixed": "a"}}
    result = WorkflowNode().run(context_for(config, input={"n": 2}))
    assert result.outcome == OutcomeKind.CHILD
    assert result.child == ChildRequest(reference="child.yaml", input={"x": 3, "fixed": "a"})
    bare = WorkflowNode().run(context_for({"workflow": "registered-name"}))
    assert bare.child == ChildRequest(reference="registered-name", input={})


def test_noop_passes_its_input_through(context_for):
    result = NoopNode().run(context_for({}, input={"a": [1, 2]}))
    assert result.outcome == OutcomeKind.SUCCEEDED
    assert result.output == {"a": [1, 2]}


def test_fail_with_a_rendered_message_or_the_default(context_for):
    result = FailNode().run(
        context_for({"message": "guard tripped for {{ input.id }}"}, input={"id": 9})
    )
    assert result.outcome == OutcomeKind.FAILED
    assert result.error == "guard tripped for 9"
    assert FailNode().run(context_for({})).error == "failed by a fail node"
    secret = FailNode().run(
        context_for({"message": "key {{ secrets.K }}"}, secrets={"K": "s3cr3t-value"})
    )
    assert secret.error == "key ***"
