"""The input a parent hands a sub-workflow, against the child's declared `inputs`."""

from __future__ import annotations

from spane_cli.workflow.inputs import apply_inputs
from spane_cli.workflow.model import build_workflow

CHILD = build_workflow(
    {
        "version": 1,
        "name": "child",
        "inputs": {
            "n": {"type": "integer", "minimum": 1, "required": True},
            "label": {"type": "string", "default": "item"},
            "tags": {"type": "array", "default": []},
        },
        "nodes": {"a": {"type": "noop"}},
    }
)


def test_defaults_fill_what_the_parent_leaves_out() -> None:
    assert apply_inputs(CHILD.inputs, {"n": 2}) == ({"n": 2, "label": "item", "tags": []}, [])


def test_each_problem_names_its_input() -> None:
    _, problems = apply_inputs(CHILD.inputs, {"label": "x", "nmae": 1})
    assert problems == [
        "missing required input 'n'",
        "unknown input 'nmae'; inputs are: label, n, tags",
    ]
    _, problems = apply_inputs(CHILD.inputs, {"n": "abc"})
    assert problems == ["input 'n': 'abc' is not of type 'integer'"]
    _, problems = apply_inputs(CHILD.inputs, {"n": 0})
    assert problems == ["input 'n': 0 is less than the minimum of 1"]


def test_a_number_or_boolean_for_a_string_input_becomes_its_text() -> None:
    resolved, problems = apply_inputs(CHILD.inputs, {"n": 1, "label": 7})
    assert (resolved["label"], problems) == ("7", [])
    resolved, _ = apply_inputs(CHILD.inputs, {"n": 1, "label": True})
    assert resolved["label"] == "true"
    _, problems = apply_inputs(CHILD.inputs, {"n": 1, "label": ["a"]})
    assert problems == ["input 'label': ['a'] is not of type 'string'"]


def test_an_input_that_is_not_a_mapping_is_refused() -> None:
    assert apply_inputs(CHILD.inputs, [1, 2]) == ({}, ["the input must be a mapping, got list"])
    assert apply_inputs(CHILD.inputs, None)[1] == ["missing required input 'n'"]
