"""`spane run -i` and `--input-file`: a string input gets the text as typed, other inputs get
JSON, whichever way they are given."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from helpers import final_document, run_spane

FLOW = """\
version: 1
name: typed-inputs
inputs:
  text: {type: string}
  maybe_text: {type: [string, "null"]}
  number: {type: number, default: 0}
  anything: {description: declared without a type}
  choice: {enum: ["1", "2.0"]}
  code: {pattern: "^[0-9]+$"}
nodes:
  show:
    type: transform
    config:
      output:
        text: "{{ input.text | default(none) }}"
        maybe_text: "{{ input.maybe_text | default(none) }}"
        number: "{{ input.number }}"
        anything: "{{ input.anything | default(none) }}"
        choice: "{{ input.choice | default(none) }}"
        code: "{{ input.code | default(none) }}"
        undeclared: "{{ input.extra | default(none) }}"
"""


@pytest.fixture
def flow(tmp_path: Path) -> Path:
    path = tmp_path / "flow.yaml"
    path.write_text(FLOW)
    return path


def shown(*args: str) -> dict[str, Any]:
    result = run_spane("run", "--local", "-o", "json", *args)
    assert result.exit_code == 0, result.output
    return dict(final_document(result.stdout)["nodes"]["show"]["output"])


@pytest.mark.parametrize("typed", ["true", "null", "1.10", "007", "[1, 2]", '{"a": 1}', " x "])
def test_a_string_input_is_the_text_typed(flow: Path, typed: str) -> None:
    output = shown(str(flow), "-i", f"text={typed}", "-i", f"maybe_text={typed}")
    assert output["text"] == typed
    assert output["maybe_text"] == typed


def test_other_inputs_are_json_when_it_parses(flow: Path) -> None:
    output = shown(str(flow), "-i", "number=1.10", "-i", "anything=true", "-i", "text=x")
    assert output["number"] == 1.1
    assert output["anything"] is True
    assert output["text"] == "x"


def test_a_workflow_with_no_inputs_takes_json_or_text(tmp_path: Path) -> None:
    path = tmp_path / "open.yaml"
    path.write_text(
        "version: 1\nname: open\nnodes:\n"
        "  show: {type: transform, config: {output: {n: '{{ input.n }}', w: '{{ input.w }}'}}}\n"
    )
    output = shown(str(path), "-i", "n=[1, 2]", "-i", "w=hello")
    assert output == {"n": [1, 2], "w": "hello"}


def test_a_number_input_refuses_text(flow: Path) -> None:
    result = run_spane("run", "--local", str(flow), "-i", "number=ten")
    assert result.exit_code == 2
    assert result.stderr.strip() == "spane: input 'number': 'ten' is not of type 'number'"


def test_an_input_file_keeps_the_text_of_unquoted_scalars_for_string_inputs(
    flow: Path, tmp_path: Path
) -> None:
    given = tmp_path / "in.yaml"
    given.write_text("text: 1.10\nmaybe_text: true\nnumber: 1.10\nanything: null\n")
    output = shown(str(flow), "--input-file", str(given))
    assert output == {
        "text": "1.10",
        "maybe_text": "true",
        "number": 1.1,
        "anything": None,
        "choice": None,
        "code": None,
        "undeclared": None,
    }


def test_a_json_input_file_from_stdin_and_i_on_top(flow: Path) -> None:
    result = run_spane(
        "run", "--local", "-o", "json", str(flow), "--input-file", "-", "-i", "number=3",
        input='{"text": false, "number": 2}',
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    output = final_document(result.stdout)["nodes"]["show"]["output"]
    assert output["text"] == "false"
    assert output["number"] == 3


def test_a_broken_input_file_is_one_located_line(flow: Path, tmp_path: Path) -> None:
    given = tmp_path / "in.yaml"
    given.write_text("text: [1\n")
    result = run_spane("run", "--local", str(flow), "--input-file", str(given))
    assert result.exit_code == 2
    assert result.stderr.startswith(f"spane: --input-file {given}:1:")
    assert len(result.stderr.strip().splitlines()) == 1


def test_an_enum_of_strings_or_a_pattern_takes_text_without_a_type(flow: Path) -> None:
    output = shown(str(flow), "-i", "choice=2.0", "-i", "code=007")
    assert output["choice"] == "2.0"
    assert output["code"] == "007"
