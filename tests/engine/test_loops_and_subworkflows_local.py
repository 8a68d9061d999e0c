"""`spane run --local` and `spane validate` as a user meets them: a foreach over a
sub-workflow, the child's inputs defaulted and checked, and an execution's deadline."""

from __future__ import annotations

import json
from pathlib import Path

from helpers import final_document, run_spane

CHILD = """version: 1
name: child
inputs:
  n: {type: integer, required: true}
  label: {type: string, default: item}
nodes:
  show:
    type: transform
    config: {output: "{{ input.label }} {{ input.n * 2 }}"}
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def parent(tmp_path: Path, node: str) -> Path:
    write(tmp_path, "child.yaml", CHILD)
    return write(tmp_path, "parent.yaml", f"version: 1\nname: parent\nnodes:\n{node}")


def test_a_foreach_over_a_sub_workflow_gives_the_children_outputs_in_item_order(
    tmp_path: Path,
) -> None:
    path = parent(
        tmp_path,
        "  each:\n"
        "    type: workflow\n"
        "    foreach: [3, 1, 2]\n"
        "    max_parallel: 2\n"
        "    config: {workflow: ./child.yaml, input: {n: '{{ item }}'}}\n",
    )
    result = run_spane("run", "--local", "--wait", "-o", "json", str(path))
    assert result.exit_code == 0, result.output
    each = final_document(result.stdout)["nodes"]["each"]
    assert each["output"] == [{"show": "item 6"}, {"show": "item 2"}, {"show": "item 4"}]
    listed = run_spane("list", "-o", "json")
    assert sorted(e["workflow"] for e in json.loads(listed.stdout)) == [
        "child",
        "child",
        "child",
        "parent",
    ]


def test_a_delay_loop_and_a_delay_per_item_end_in_their_own_time(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "naps.yaml",
        "version: 1\nname: naps\nnodes:\n"
        "  nap: {type: delay, foreach: [100ms, 300ms], config: {duration: '{{ item }}'}}\n",
    )
    result = run_spane("run", "--local", "--wait", "-o", "json", str(path))
    assert result.exit_code == 0, result.output
    assert final_document(result.stdout)["nodes"]["nap"]["items"] == {"total": 2, "done": 2}


def test_written_out_child_inputs_are_checked_at_validation(tmp_path: Path) -> None:
    path = parent(
        tmp_path,
        "  typo:\n"
        "    type: workflow\n"
        "    config: {workflow: ./child.yaml, input: {n: 1, lable: x}}\n"
        "  wrong:\n"
        "    type: workflow\n"
        "    config: {workflow: ./child.yaml, input: {n: abc}}\n"
        "  missing:\n"
        "    type: workflow\n"
        "    config: {workflow: ./child.yaml}\n",
    )
    result = run_spane("validate", str(path))
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 3, lines
    assert ":6:" in lines[0] and "unknown input 'lable'; inputs are: label, n" in lines[0]
    assert ":9:" in lines[1] and "input 'n': 'abc' is not of type 'integer'" in lines[1]
    assert ":12:" in lines[2] and "missing required input 'n'" in lines[2]
    submitted = run_spane("run", "--local", "--wait", str(path))
    assert submitted.exit_code == 2, submitted.output
    assert "unknown input 'lable'" in submitted.stderr and "Traceback" not in submitted.output
    assert run_spane("list", "-o", "json").stdout.strip() in ("[]", "")


def test_a_rendered_input_of_the_wrong_type_fails_the_parent_node_naming_it(
    tmp_path: Path,
) -> None:
    path = parent(
        tmp_path,
        "  call:\n"
        "    type: workflow\n"
        "    config: {workflow: ./child.yaml, input: {n: '{{ \"abc\" }}'}}\n",
    )
    assert run_spane("validate", str(path)).exit_code == 0
    result = run_spane("run", "--local", "--wait", "-o", "json", str(path))
    assert result.exit_code == 1, result.output
    call = final_document(result.stdout)["nodes"]["call"]
    assert call["status"] == "failed"
    assert call["error"] == "sub-workflow './child.yaml': input 'n': 'abc' is not of type 'integer'"


def test_an_execution_timeout_fails_its_running_node_with_the_deadline(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "late.yaml",
        "version: 1\nname: late\ntimeout: 500ms\nnodes:\n"
        "  slow: {type: shell, config: {run: 'sleep 20'}}\n"
        "  nap: {type: delay, config: {duration: 1h}}\n"
        "  after: {type: noop, needs: [slow]}\n",
    )
    result = run_spane("run", "--local", "--wait", "-o", "json", str(path))
    assert result.exit_code == 1, result.output
    execution = final_document(result.stdout)
    assert execution["status"] == "failed"
    assert execution["error"] == "execution timed out after 500ms: exceeded its deadline"
    for node_id in ("slow", "nap"):
        node = execution["nodes"][node_id]
        assert node["status"] == "failed"
        assert node["error"] == "the execution timed out after 500ms: exceeded its deadline"
    assert execution["nodes"]["after"]["status"] == "upstream_failed"


def test_a_foreach_branch_runs_the_children_its_items_chose(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "route.yaml",
        "version: 1\nname: route\nnodes:\n"
        "  route:\n"
        "    type: branch\n"
        "    foreach: [1, 5]\n"
        "    config: {cases: [{when: 'item > 3', next: [big]}], default: [small]}\n"
        "  big: {type: noop, needs: [route]}\n"
        "  small: {type: noop, needs: [route]}\n"
        "  never: {type: noop, needs: [route]}\n",
    )
    result = run_spane("run", "--local", "--wait", "-o", "json", str(path))
    assert result.exit_code == 0, result.output
    nodes = final_document(result.stdout)["nodes"]
    assert nodes["route"]["output"] == [{"chosen": ["small"]}, {"chosen": ["big"]}]
    assert {n: nodes[n]["status"] for n in ("big", "small", "never")} == {
        "big": "succeeded",
        "small": "succeeded",
        "never": "skipped",
    }
