"""`--path DIR`: python nodes import their functions from it, on `spane run --local` and on
`spane worker` (its worker processes included), and so do the python commands a shell node
starts."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from cluster_support import Cluster, poll
from helpers import final_document, run_spane, spane_process

STEPS = textwrap.dedent(
    """
    def double(value, context):
        context.logger.info("doubling %s", value)
        return {"doubled": value * 2, "attempt": context.attempt}
    """
)

FLOW = textwrap.dedent(
    """\
    version: 1
    name: python-path
    inputs:
      n: {type: integer, default: 21}
    nodes:
      call:
        type: python
        config:
          function: "spane_path_steps:double"
          kwargs: {value: "{{ input.n }}"}
      child:
        type: shell
        needs: [call]
        config:
          run: python3 -c 'import spane_path_steps; print(spane_path_steps.__name__)'
    """
)


def lay_out(tmp_path: Path) -> tuple[Path, Path]:
    library = tmp_path / "lib"
    library.mkdir()
    (library / "spane_path_steps.py").write_text(STEPS)
    flow = tmp_path / "flow.yaml"
    flow.write_text(FLOW)
    return library, flow


def test_run_local_imports_from_path(tmp_path: Path) -> None:
    library, flow = lay_out(tmp_path)
    result = spane_process(
        "run", "--local", "-o", "json", "--path", str(library), str(flow), home=tmp_path / "h"
    )
    assert result.returncode == 0, result.stderr
    nodes = final_document(result.stdout)["nodes"]
    assert nodes["call"]["output"] == {"doubled": 42, "attempt": 1}
    assert nodes["child"]["output"]["stdout"] == "spane_path_steps\n"


def test_without_path_the_node_says_what_it_could_not_import(tmp_path: Path) -> None:
    _, flow = lay_out(tmp_path)
    result = spane_process("run", "--local", "-o", "json", str(flow), home=tmp_path / "h")
    assert result.returncode == 1
    error = final_document(result.stdout)["nodes"]["call"]["error"]
    assert error.splitlines()[0] == (
        "cannot load python function 'spane_path_steps:double': "
        "ModuleNotFoundError: No module named 'spane_path_steps' "
        "(modules come from the worker's packages, PYTHONPATH and --path DIR)"
    )


def test_a_path_that_is_not_a_directory_is_a_usage_error(tmp_path: Path) -> None:
    _, flow = lay_out(tmp_path)
    missing = tmp_path / "nope"
    for args in (["run", "--local", "--path", str(missing), str(flow)],
                 ["worker", "--burst", "--path", str(missing)]):  # fmt: skip
        result = run_spane(*args)
        assert result.exit_code == 2, result.output
        assert result.stderr.strip() == f"spane: --path {missing}: no such directory"
    remote = run_spane("run", "--path", str(tmp_path), str(flow))
    assert remote.exit_code == 2
    assert "--path needs --local" in remote.stderr


def test_worker_processes_import_from_path(cluster: Cluster, tmp_path: Path) -> None:
    library, flow = lay_out(tmp_path)
    execution_id = cluster.submit(flow.read_text(), {"n": 5})
    worker = cluster.start_worker("--path", str(library), "--concurrency", "2", "--burst")
    poll(lambda: cluster.status(execution_id) in ("succeeded", "failed"), what="the end")
    got = cluster.get(execution_id)
    assert got["status"] == "succeeded", json.dumps(got["nodes"], indent=1)
    assert got["nodes"]["call"]["output"] == {"doubled": 10, "attempt": 1}
    assert got["nodes"]["child"]["output"]["stdout"] == "spane_path_steps\n"
    worker.wait(timeout=60)
