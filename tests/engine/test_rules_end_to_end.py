"""Trigger rules, branches, exit handlers, fail_fast, `attempt` and `retry.when`, each through
`spane run --local` the way a user runs a workflow file, on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_local(flow: Path, *args: str, db: str | None = None) -> tuple[int, dict[str, Any], str]:
    """`spane run --local -o json FLOW`: the exit code, the final execution, stderr."""
    result = subprocess.run(
        [sys.executable, "-m", "spane_cli", "run", "--local", "-o", "json", str(flow), *args]
        + (["--db", db] if db else []),
        capture_output=True,
        text=True,
        timeout=90,
        env=dict(os.environ),
        cwd=ROOT,
    )
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stdout.strip(), result.stderr
    final = json.loads(result.stdout)  # the one document: the execution as it ended
    return result.returncode, final, result.stderr


def statuses(execution: dict[str, Any]) -> dict[str, str]:
    return {node_id: node["status"] for node_id, node in execution["nodes"].items()}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db(request: pytest.FixtureRequest) -> str:
    if request.param == "sqlite":
        return str(request.getfixturevalue("sqlite_url"))
    return str(request.getfixturevalue("fresh_postgres_url"))


# --- trigger rules ----------------------------------------------------------------------------

RULES = [
    "all_success",
    "all_failed",
    "all_done",
    "all_skipped",
    "one_success",
    "one_failed",
    "one_done",
    "none_failed",
    "none_failed_min_one_success",
    "none_skipped",
    "all_done_min_one_success",
    "always",
]
# How a parent is made to end in a state: a node (and the nodes it needs).
PARENT = {
    "S": "{name}: {{type: noop}}\n",
    "F": "{name}: {{type: fail, config: {{message: boom}}}}\n",
    "SK": "{name}: {{type: noop, when: 'false'}}\n",
    "UF": "{name}_cause: {{type: fail, config: {{message: boom}}}}\n"
    "  {name}: {{type: noop, needs: [{name}_cause]}}\n",
}
STATUS_OF = {"run": "succeeded", "skip": "skipped", "uf": "upstream_failed"}
# Parents -> the status of a node under each rule, in the order of RULES (docs/trigger-rules.md).
END_TO_END = {
    ("S", "S"): "run skip run skip run skip run run run run run run",
    ("S", "F"): "uf skip run skip run run run uf uf run run run",
    ("S", "SK"): "skip skip run skip run skip run run run skip skip run",
    ("F", "F"): "uf run run skip uf run run uf uf run uf run",
    ("F", "SK"): "uf skip run skip uf run run uf uf skip skip run",
    ("SK", "SK"): "skip skip run run skip skip skip run skip skip skip run",
    ("UF", "SK"): "uf skip run skip uf run skip uf uf skip skip run",
}


def rules_flow(tmp_path: Path) -> Path:
    """One workflow holding every parent combination of END_TO_END: combination `cN` has
    parents `cN_p1` and `cN_p2` and a node `cN_<rule>` per rule below them."""
    nodes = ""
    for index, (first, second) in enumerate(END_TO_END):
        prefix = f"c{index}"
        nodes += "  " + PARENT[first].format(name=f"{prefix}_p1")
        nodes += "  " + PARENT[second].format(name=f"{prefix}_p2")
        for rule in RULES:
            nodes += (
                f"  {prefix}_{rule}: {{type: noop, needs: [{prefix}_p1, {prefix}_p2],"
                f" trigger: {rule}}}\n"
            )
    flow = tmp_path / "rules.yaml"
    flow.write_text(f"version: 1\nname: rules\nnodes:\n{nodes}")
    return flow


def test_every_rule_over_real_parents(tmp_path: Path, db: str) -> None:
    code, execution, _ = run_local(rules_flow(tmp_path), db=db)
    assert code == 1  # some parents fail
    got = statuses(execution)
    for index, (parents, expected) in enumerate(END_TO_END.items()):
        wanted = {rule: STATUS_OF[word] for rule, word in zip(RULES, expected.split(), strict=True)}
        assert {rule: got[f"c{index}_{rule}"] for rule in RULES} == wanted, parents


def test_branch_join_and_a_direct_child_below_the_chosen_path(tmp_path: Path, db: str) -> None:
    # Airflow's documented shape: branch -> [a, b]; a -> join; b -> join; branch -> join.
    flow = tmp_path / "branch.yaml"
    flow.write_text(
        "version: 1\nname: branch\nnodes:\n"
        "  route: {type: branch, config: {cases: [{when: 'true', next: [a]}], default: [b]}}\n"
        "  a: {type: noop, needs: [route]}\n"
        "  b: {type: noop, needs: [route]}\n"
        "  a_more: {type: noop, needs: [a]}\n"
        "  b_more: {type: noop, needs: [b]}\n"
        "  direct: {type: noop, needs: [route, a_more]}\n"
        "  join: {type: noop, needs: [a_more, b_more], trigger: none_failed_min_one_success}\n"
        "  strict: {type: noop, needs: [a_more, b_more]}\n"
    )
    code, execution, _ = run_local(flow, db=db)
    assert code == 0
    assert statuses(execution) == {
        "route": "succeeded",
        "a": "succeeded",
        "b": "skipped",
        "a_more": "succeeded",
        "b_more": "skipped",
        "direct": "succeeded",
        "join": "succeeded",
        "strict": "skipped",
    }


# --- exit handlers and fail_fast --------------------------------------------------------------

EXIT_HANDLERS = """\
  notify:
    type: transform
    on_exit: true
    config:
      output:
        status: "{{ workflow.status }}"
        failed: "{{ workflow.failures | map(attribute='node') | list }}"
        errors: "{{ workflow.failures | map(attribute='error') | list }}"
        leaves: "{{ parents }}"
  only_on_failure:
    type: noop
    on_exit: true
    when: "workflow.status == 'failed'"
  after_notify:
    type: transform
    on_exit: true
    needs: [notify]
    config: {output: "{{ parents.status }}"}
"""


def test_exit_handlers_after_a_success(tmp_path: Path, db: str) -> None:
    flow = tmp_path / "ok.yaml"
    flow.write_text(
        "version: 1\nname: ok\nnodes:\n"
        "  a: {type: transform, config: {output: 1}}\n"
        "  b: {type: transform, needs: [a], config: {output: 2}}\n" + EXIT_HANDLERS
    )
    code, execution, _ = run_local(flow, db=db)
    assert code == 0
    assert execution["status"] == "succeeded"
    nodes = execution["nodes"]
    assert nodes["notify"]["output"] == {
        "status": "succeeded",
        "failed": [],
        "errors": [],
        "leaves": {"b": 2},
    }
    assert nodes["only_on_failure"]["status"] == "skipped"
    assert nodes["after_notify"]["output"] == "succeeded"
    # The execution's output is the main graph's, not the exit handlers'.
    assert execution["output"] == {"b": 2}
    # Every exit handler starts after every node of the main graph has ended.
    assert nodes["notify"]["started_at"] >= nodes["b"]["finished_at"]


def test_exit_handlers_after_a_failure_see_it(tmp_path: Path, db: str) -> None:
    flow = tmp_path / "bad.yaml"
    flow.write_text(
        "version: 1\nname: bad\nnodes:\n"
        "  a: {type: shell, config: {run: 'echo disk full >&2; exit 4'}}\n"
        "  b: {type: noop, needs: [a]}\n"
        "  side: {type: noop}\n" + EXIT_HANDLERS
    )
    code, execution, _ = run_local(flow, db=db)
    assert code == 1
    assert execution["status"] == "failed"
    assert execution["error"] == "node 'a' failed: exit code 4: disk full"
    nodes = execution["nodes"]
    assert nodes["b"]["status"] == "upstream_failed"
    output = nodes["notify"]["output"]
    assert output["status"] == "failed"
    assert output["failed"] == ["a"]
    assert output["errors"] == ["exit code 4: disk full"]
    assert nodes["only_on_failure"]["status"] == "succeeded"
    assert nodes["after_notify"]["output"] == "failed"


def test_a_failed_exit_handler_fails_a_successful_execution(tmp_path: Path, db: str) -> None:
    flow = tmp_path / "handler-fails.yaml"
    flow.write_text(
        "version: 1\nname: handler-fails\nnodes:\n"
        "  a: {type: noop}\n"
        "  report: {type: fail, on_exit: true, config: {message: 'webhook down'}}\n"
        "  after: {type: noop, on_exit: true, needs: [report]}\n"
    )
    code, execution, _ = run_local(flow, db=db)
    assert code == 1
    assert execution["status"] == "failed"
    assert execution["error"] == "exit handler 'report' failed: webhook down"
    assert statuses(execution) == {"a": "succeeded", "report": "failed", "after": "upstream_failed"}


def test_fail_fast_starts_nothing_new_but_lets_running_nodes_finish(
    tmp_path: Path, db: str
) -> None:
    flow = tmp_path / "fast.yaml"
    flow.write_text(
        "version: 1\nname: fast\nfail_fast: true\nnodes:\n"
        "  slow: {type: shell, config: {run: 'sleep 1; echo done'}}\n"
        "  after_slow: {type: noop, needs: [slow]}\n"
        "  broken: {type: fail, config: {message: 'bad input'}}\n"
        "  cleanup: {type: noop, needs: [after_slow, broken], trigger: all_done}\n"
        "  handler:\n"
        "    type: transform\n"
        "    on_exit: true\n"
        "    config: {output: '{{ workflow.status }}'}\n"
    )
    code, execution, _ = run_local(flow, "--timeout", "60s", db=db)
    assert code == 1
    nodes = execution["nodes"]
    assert nodes["slow"]["status"] == "succeeded"  # it was running: it finished
    assert nodes["broken"]["status"] == "failed"
    # Not started when `broken` failed: skipped, even the all_done cleanup.
    assert nodes["after_slow"]["status"] == "skipped"
    assert nodes["cleanup"]["status"] == "skipped"
    assert nodes["handler"]["output"] == "failed"
    assert nodes["handler"]["started_at"] >= nodes["slow"]["finished_at"]
    assert execution["error"] == "node 'broken' failed: bad input"


def test_without_fail_fast_the_other_branches_go_on(tmp_path: Path, sqlite_url: str) -> None:
    flow = tmp_path / "slow.yaml"
    flow.write_text(
        "version: 1\nname: slow\nnodes:\n"
        "  slow: {type: shell, config: {run: 'sleep 0.3'}}\n"
        "  after_slow: {type: noop, needs: [slow]}\n"
        "  broken: {type: fail, config: {message: 'bad input'}}\n"
    )
    _, execution, _ = run_local(flow, db=sqlite_url)
    assert execution["nodes"]["after_slow"]["status"] == "succeeded"


# --- attempt and retry.when -------------------------------------------------------------------


def test_attempt_is_the_try_number_in_every_node(tmp_path: Path, db: str) -> None:
    flow = tmp_path / "attempt.yaml"
    flow.write_text(
        "version: 1\nname: attempt\nnodes:\n"
        "  flaky:\n"
        "    type: shell\n"
        "    retry: {attempts: 3}\n"
        "    config: {run: 'test {{ attempt }} -ge 3 && echo try {{ attempt }}'}\n"
        "  each:\n"
        "    type: transform\n"
        "    foreach: [a, b]\n"
        "    config: {output: '{{ item }}{{ attempt }}'}\n"
        "  first: {type: transform, config: {output: '{{ attempt }}'}}\n"
        "  whole: {type: transform, config: {output: '{{ workflow }}'}}\n"
    )
    code, execution, _ = run_local(flow, db=db)
    assert code == 0, execution
    nodes = execution["nodes"]
    assert nodes["flaky"]["attempts"] == 3
    assert nodes["flaky"]["output"]["stdout"] == "try 3\n"
    assert nodes["each"]["output"] == ["a1", "b1"]
    assert nodes["first"]["output"] == 1
    assert nodes["whole"]["output"] == {"name": "attempt"}  # plain data, not an object


def test_retry_when_false_fails_at_once(tmp_path: Path, db: str) -> None:
    flow = tmp_path / "when.yaml"
    flow.write_text(
        "version: 1\nname: when\nnodes:\n"
        "  transient:\n"
        "    type: shell\n"
        "    retry: {attempts: 4, when: 'exit_code == 75'}\n"
        "    config: {run: 'test {{ attempt }} -ge 3 || exit 75'}\n"
        "  permanent:\n"
        "    type: shell\n"
        "    retry: {attempts: 4, when: 'exit_code == 75'}\n"
        "    config: {run: 'exit 2'}\n"
        "  by_error:\n"
        "    type: fail\n"
        "    retry: {attempts: 5, when: \"'again' in error and attempt < 2\"}\n"
        "    config: {message: 'try again later'}\n"
    )
    code, execution, _ = run_local(flow, db=db)
    assert code == 1
    nodes = execution["nodes"]
    assert nodes["transient"]["status"] == "succeeded"
    assert nodes["transient"]["attempts"] == 3
    assert nodes["permanent"]["status"] == "failed"
    assert nodes["permanent"]["attempts"] == 1
    assert nodes["by_error"]["status"] == "failed"
    assert nodes["by_error"]["attempts"] == 2


class _Statuses(BaseHTTPRequestHandler):
    """/flaky answers 503 twice, then 200; /gone always 404. Counts the requests per path."""

    hits: dict[str, int]

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.hits[self.path] = self.hits.get(self.path, 0) + 1
        status = 404 if self.path == "/gone" else 503 if self.hits[self.path] <= 2 else 200
        body = b'{"ok": true}'
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def status_server() -> Iterator[tuple[str, dict[str, int]]]:
    hits: dict[str, int] = {}
    handler = type("Handler", (_Statuses,), {"hits": hits})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", hits
    finally:
        server.shutdown()
        server.server_close()


def test_http_retries_on_503_and_not_on_404(
    tmp_path: Path, sqlite_url: str, status_server: tuple[str, dict[str, int]]
) -> None:
    base, hits = status_server
    flow = tmp_path / "http.yaml"
    flow.write_text(
        "version: 1\nname: http\n"
        "defaults:\n"
        "  retry: {attempts: 5, delay: 50ms, when: 'status == 503'}\n"
        "nodes:\n"
        f"  flaky: {{type: http, config: {{url: '{base}/flaky'}}}}\n"
        f"  gone: {{type: http, config: {{url: '{base}/gone'}}}}\n"
    )
    code, execution, _ = run_local(flow, db=sqlite_url)
    assert code == 1
    nodes = execution["nodes"]
    assert nodes["flaky"]["status"] == "succeeded"
    assert nodes["flaky"]["attempts"] == 3
    assert nodes["gone"]["status"] == "failed"
    assert nodes["gone"]["attempts"] == 1
    assert hits == {"/flaky": 3, "/gone": 1}


# --- the example in workflows/ ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("fail_at", "status", "report"),
    [
        ("none", "succeeded", {"status": "succeeded", "failed": [], "reason": ""}),
        (
            "copy",
            "failed",
            {"status": "failed", "failed": ["copy"], "reason": "exit code 1: bucket is read-only"},
        ),
    ],
)
def test_the_backup_example_reports_its_outcome(
    sqlite_url: str, fail_at: str, status: str, report: dict[str, Any]
) -> None:
    code, execution, _ = run_local(
        ROOT / "workflows" / "exit-handler.yaml", "-i", f"fail_at={fail_at}", db=sqlite_url
    )
    assert execution["status"] == status
    assert code == (0 if status == "succeeded" else 1)
    nodes = execution["nodes"]
    assert nodes["report"]["output"] == report
    assert nodes["page_on_call"]["status"] == ("skipped" if status == "succeeded" else "succeeded")
    if fail_at == "copy":
        assert nodes["verify"]["status"] == "skipped"  # fail_fast: never started


def test_retry_when_applies_to_each_foreach_item(tmp_path: Path, sqlite_url: str) -> None:
    flow = tmp_path / "items.yaml"
    flow.write_text(
        "version: 1\nname: items\nnodes:\n"
        "  each:\n"
        "    type: shell\n"
        "    foreach: [75, 2]\n"
        "    retry: {attempts: 3, when: 'exit_code == 75'}\n"
        "    config: {run: 'test {{ attempt }} -ge 2 && exit 0; exit {{ item }}'}\n"
    )
    code, execution, _ = run_local(flow, db=sqlite_url)
    assert code == 1
    # Item 0 exits 75 and succeeds on its second try; item 1 exits 2 and is not tried again.
    assert execution["nodes"]["each"]["status"] == "failed"
    assert "item 1" in execution["nodes"]["each"]["error"]
    with sqlite3.connect(sqlite_url.removeprefix("sqlite:///")) as connection:
        items = connection.execute(
            "SELECT item_index, status, attempt FROM node_item ORDER BY item_index"
        ).fetchall()
    assert items == [(0, "succeeded", 2), (1, "failed", 1)]
