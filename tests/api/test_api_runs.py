"""Runs over HTTP as the CLI does them: validation problems, idempotency, pages, the
lifecycle, dead letters and workflows, with real workers; and the same on SQLite."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from api_support import ApiServer, make_token
from cluster_support import ROOT, Cluster, flow, poll
from test_api_tokens import assert_problem

HELLO = flow("hello", "  a: {type: noop}\n  b: {type: noop, needs: [a]}\n")
# A foreach node has `items`, a node with a priority shows it, the others have neither.
SHAPED = flow(
    "shaped",
    "  a: {type: noop, priority: 7}\n"
    "  b: {type: transform, needs: [a], foreach: '{{ [1, 2] }}', config: {output: 1}}\n",
)
BAD = """version: 1
name: bad
nodes:
  a: {type: noop}
  b: {type: shell, needs: [a, ghost]}
  c: {type: noop, needs: [c]}
"""


def spane(server: ApiServer, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "spane_cli", *args],
        env=server.env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        input=stdin,
        timeout=60,
    )


def test_a_bad_upload_has_the_problems_of_spane_validate(
    pg_server: ApiServer, tmp_path: Path
) -> None:
    token = make_token(pg_server.db_url, "run")
    path = tmp_path / "bad.yaml"
    path.write_text(BAD)
    validated = subprocess.run(
        [sys.executable, "-m", "spane_cli", "validate", "bad.yaml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    expected = [line for line in validated.stdout.splitlines() if line.startswith("bad.yaml:")]
    assert validated.returncode == 2 and len(expected) >= 2, validated.stdout
    with pg_server.client(token) as http:
        answer = http.post("/v1/executions", json={"document": BAD, "filename": "bad.yaml"})
        body = assert_problem(answer, 422, "invalid-workflow")
        assert [p["text"] for p in body["problems"]] == expected
        assert body["exit_code"] == 2
        first = body["problems"][0]
        assert first["file"] == "bad.yaml" and first["line"] >= 5 and first["column"] >= 1
        syntax = http.post("/v1/executions", json={"document": "name: [\n", "filename": "x.yml"})
        assert assert_problem(syntax, 422, "invalid-workflow")["problems"][0]["text"].startswith(
            "x.yml:"
        )
        escape = http.post(
            "/v1/executions",
            json={"document": flow("p", "  c: {type: workflow, config: {workflow: ../x.yaml}}\n")},
        )
        body = assert_problem(escape, 422, "invalid-workflow")
        assert "cannot reference the file" in body["problems"][0]["message"]
        assert http.get("/v1/executions").json()["items"] == []  # nothing was created


def test_problems_name_what_is_wrong_and_are_never_500(pg_server: ApiServer) -> None:
    token = make_token(pg_server.db_url, "admin")
    with pg_server.client(token) as http:
        missing = assert_problem(http.get("/v1/executions/0000dead"), 404, "not-found")
        assert missing["exit_code"] == 4 and missing["instance"] == "/v1/executions/0000dead"
        assert_problem(http.get("/v1/dead-letters/12345"), 404, "not-found")
        assert_problem(http.get("/v1/workflows/nope/versions"), 404, "not-found")
        unknown = http.post("/v1/executions", json={"workflow": "nope"})
        assert_problem(unknown, 404, "not-found")
        bad_body = http.post("/v1/executions", json={"workflow": "x", "document": "y"})
        assert assert_problem(bad_body, 422, "invalid")["invalid_params"]
        assert_problem(
            http.post("/v1/executions", content=b"{not json", headers={"content-type": "x"}),
            422,
            "invalid",
        )
        assert_problem(http.get("/v1/executions", params={"status": "sleepy"}), 422, "invalid")
        assert_problem(http.get("/v1/executions", params={"since": "soon"}), 422, "invalid")
        assert_problem(http.get("/v1/executions", params={"limit": 0}), 422, "invalid")
        assert_problem(http.put("/v1/executions"), 405, "method-not-allowed")
        assert http.put("/v1/executions").headers["allow"] == "GET, POST"
        assert_problem(http.get("/v1/nothing-here"), 404, "not-found")


def test_an_idempotency_key_works_as_the_cli_flag(pg_server: ApiServer, tmp_path: Path) -> None:
    token = make_token(pg_server.db_url, "run")
    headers = {"Idempotency-Key": "deploy-42"}
    with pg_server.client(token) as http:
        first = http.post("/v1/executions", json={"document": HELLO}, headers=headers)
        again = http.post("/v1/executions", json={"document": HELLO}, headers=headers)
        assert (first.status_code, again.status_code) == (201, 200)
        assert first.json()["id"] == again.json()["id"] and again.json()["created"] is False
        by_name = http.post("/v1/executions", json={"workflow": "hello"}, headers=headers)
        assert by_name.status_code == 200 and by_name.json()["id"] == first.json()["id"]
        bad = http.post(
            "/v1/executions", json={"workflow": "hello"}, headers={"Idempotency-Key": ""}
        )
        assert bad.status_code in (400, 422)
    path = tmp_path / "hello.yaml"
    path.write_text(HELLO)
    cli = spane(pg_server, "-o", "json", "run", "--idempotency-key", "deploy-42", str(path))
    assert cli.returncode == 0, cli.stderr
    assert json.loads(cli.stdout) == {"id": first.json()["id"], "created": False}
    cli_first = spane(pg_server, "-q", "run", "--idempotency-key", "from-cli", str(path))
    with pg_server.client(token) as http:
        same = http.post(
            "/v1/executions", json={"workflow": "hello"}, headers={"Idempotency-Key": "from-cli"}
        )
        assert same.json() == {"id": cli_first.stdout.strip(), "created": False}


def test_pages_cover_every_execution_once_in_the_order_of_spane_list(
    pg_server: ApiServer,
) -> None:
    token = make_token(pg_server.db_url, "run")
    with pg_server.client(token) as http:
        made = [
            http.post("/v1/executions", json={"document": HELLO}).json()["id"] for _ in range(7)
        ]
        other = flow("other", "  a: {type: noop}\n")
        http.post("/v1/executions", json={"document": other})
        seen: list[str] = []
        cursor = None
        sizes = []
        while True:
            params = {"workflow": "hello", "limit": 3, **({"cursor": cursor} if cursor else {})}
            page = http.get("/v1/executions", params=params).json()
            sizes.append(len(page["items"]))
            seen += [item["id"] for item in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert sizes == [3, 3, 1]
        assert seen == list(reversed(made))
        listed = json.loads(spane(pg_server, "-o", "json", "list", "--workflow", "hello").stdout)
        assert [e["id"] for e in listed] == seen
        everything = http.get("/v1/executions", params={"limit": 1000}).json()
        assert len(everything["items"]) == 8 and everything["next_cursor"] is None
        summary = everything["items"][0]
        assert "nodes" not in summary and summary["workflow"] == "other"
        workflows = http.get("/v1/workflows", params={"limit": 1}).json()
        assert [w["name"] for w in workflows["items"]] == ["hello"]
        rest = http.get("/v1/workflows", params={"cursor": workflows["next_cursor"]}).json()
        assert [w["name"] for w in rest["items"]] == ["other"] and rest["next_cursor"] is None


def test_a_run_is_followed_to_its_end_and_steered_like_the_cli(
    cluster: Cluster, tmp_path: Path
) -> None:
    from api_support import serving

    marker = tmp_path / "fixed"
    guarded = flow(
        "guarded",
        "  extract: {type: transform, config: {output: {rows: 3}}}\n"
        f"  check: {{type: shell, needs: [extract], config: {{run: 'test -f {marker}'}}}}\n"
        "  load: {type: noop, needs: [check]}\n",
    )
    with serving(cluster.db_url, cluster.redis_url, tmp_path) as server:
        runner = make_token(cluster.db_url, "run")
        admin = make_token(cluster.db_url, "admin")
        cluster.start_worker()
        with server.client(runner) as http:
            started = http.post("/v1/executions", json={"document": SHAPED}).json()["id"]
            poll(lambda: http.get(f"/v1/executions/{started}").json()["status"] == "succeeded")
            shown = http.get(f"/v1/executions/{started}").json()
            assert shown == cluster.get(started)  # the shape of spane get -o json
            assert shown["nodes"]["a"]["priority"] == 7 and "items" not in shown["nodes"]["a"]
            assert shown["nodes"]["b"]["items"] == {"total": 2, "done": 2}
            ended = assert_problem(http.post(f"/v1/executions/{started}/cancel"), 409, "conflict")
            assert "already ended" in ended["detail"] and ended["exit_code"] == 1
            again = http.post(f"/v1/executions/{started}/resubmit")
            assert again.status_code == 201 and again.json()["id"] != started

            failing = http.post("/v1/executions", json={"document": guarded}).json()["id"]
            poll(lambda: http.get(f"/v1/executions/{failing}").json()["status"] == "failed")
            letters = http.get("/v1/dead-letters", params={"workflow": "guarded"}).json()["items"]
            assert [letter["node_id"] for letter in letters] == ["check"]
            letter = http.get(f"/v1/dead-letters/{letters[0]['id']}").json()
            assert letter["input"] == {"rows": 3} and letter["execution_id"] == failing
            marker.write_text("ok")
            replayed = http.post(f"/v1/dead-letters/{letter['id']}/replay")
            assert replayed.json()["nodes"] == ["check"], replayed.text
            poll(lambda: http.get(f"/v1/executions/{failing}").json()["status"] == "succeeded")
            twice = http.post(f"/v1/dead-letters/{letter['id']}/replay")
            assert_problem(twice, 409, "conflict")
            assert http.get("/v1/dead-letters").json()["items"] == []
            everything = http.get("/v1/dead-letters", params={"all": "true"}).json()["items"]
            assert [d["id"] for d in everything] == [letter["id"]]
            assert_problem(http.post(f"/v1/executions/{failing}/retry"), 409, "conflict")
            versions = http.get("/v1/workflows/guarded/versions").json()
            assert [v["version"] for v in versions] == [1]
            detail = http.get("/v1/workflows/guarded/versions/1").json()
            assert set(detail["document"]["nodes"]) == {"extract", "check", "load"}
        with server.client(admin) as http:
            # One id that exists and one that does not: the first goes, the answer says so.
            ids = [letter["id"], letter["id"] + 10**6]
            partly = assert_problem(
                http.post("/v1/dead-letters/purge", json={"ids": ids}), 404, "not-found"
            )
            assert partly["purged"] == 1 and "1 of the dead letters" in partly["detail"]
            assert_problem(http.delete(f"/v1/dead-letters/{letter['id']}"), 404, "not-found")


def test_pause_and_resume_over_http(cluster: Cluster, tmp_path: Path) -> None:
    from api_support import serving

    gate = cluster.gate("first")
    slow = flow(
        "slow",
        f"  first: {{type: shell, config: {{run: '{gate.wait}'}}}}\n"
        "  second: {type: noop, needs: [first]}\n",
    )
    with serving(cluster.db_url, cluster.redis_url, tmp_path) as server:
        token = make_token(cluster.db_url, "run")
        cluster.start_worker()
        with server.client(token) as http:
            execution_id = http.post("/v1/executions", json={"document": slow}).json()["id"]
            poll(lambda: cluster.node_status(execution_id, "first") == "running")
            paused = http.post(f"/v1/executions/{execution_id[:8]}/pause").json()
            assert paused == {"id": execution_id, "status": "paused"}
            assert_problem(http.post(f"/v1/executions/{execution_id}/pause"), 409, "conflict")
            gate.open()
            poll(lambda: cluster.node_status(execution_id, "first") == "succeeded")
            assert cluster.node_status(execution_id, "second") != "succeeded"
            resumed = http.post(f"/v1/executions/{execution_id}/resume").json()
            assert resumed["status"] == "running"
            poll(lambda: cluster.status(execution_id) == "succeeded")


def test_the_api_on_sqlite(sqlite_server: ApiServer) -> None:
    token = make_token(sqlite_server.db_url, "run")
    with sqlite_server.client(token) as http:
        started = http.post("/v1/executions", json={"document": HELLO})
        assert started.status_code == 201
        execution_id = started.json()["id"]
        assert http.get(f"/v1/executions/{execution_id}").json()["status"] in ("pending", "running")
        page = http.get("/v1/executions").json()
        assert [item["id"] for item in page["items"]] == [execution_id]
        cancelled = http.post(f"/v1/executions/{execution_id}/cancel").json()
        assert cancelled == {"id": execution_id, "status": "cancelled"}
        assert http.get("/v1/workflows").json()["items"][0]["name"] == "hello"
