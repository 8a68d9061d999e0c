"""The API as a client sees it: health, a run started and read back, problems as RFC 9457."""

from __future__ import annotations

from api_support import ApiServer, make_token
from cluster_support import flow

HELLO = flow("hello", "  a: {type: noop}\n  b: {type: noop, needs: [a]}\n")


def test_health_needs_no_token_and_readiness_sees_both_services(pg_server: ApiServer) -> None:
    with pg_server.client() as http:
        assert http.get("/healthz").json() == {"status": "ok"}
        ready = http.get("/readyz")
        assert ready.status_code == 200
        assert ready.json() == {"status": "ready", "database": "ok", "redis": "ok"}
        document = http.get("/openapi.json").json()
        assert document["openapi"].startswith("3.1")


def test_an_uploaded_workflow_runs_and_reads_back_as_spane_get(pg_server: ApiServer) -> None:
    token = make_token(pg_server.db_url, "run")
    with pg_server.client(token) as http:
        started = http.post("/v1/executions", json={"document": HELLO, "filename": "hello.yaml"})
        assert started.status_code == 201, started.text
        execution_id = started.json()["id"]
        assert started.headers["location"].endswith(f"/v1/executions/{execution_id}")
        shown = http.get(f"/v1/executions/{execution_id}").json()
        assert shown["id"] == execution_id and shown["workflow"] == "hello"
        assert shown["version"] == 1 and set(shown["nodes"]) == {"a", "b"}
        again = http.post("/v1/executions", json={"workflow": "hello", "version": 1})
        assert again.status_code == 201 and again.json()["id"] != execution_id
        by_prefix = http.get(f"/v1/executions/{execution_id[:8]}")
        assert by_prefix.json()["id"] == execution_id


def test_the_served_document_is_the_committed_one(pg_server: ApiServer) -> None:
    import json
    from pathlib import Path

    committed = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"
    with pg_server.client() as http:
        assert http.get("/openapi.json").json() == json.loads(committed.read_text())


def test_a_body_past_the_limit_is_413_whether_announced_or_streamed(
    pg_server: ApiServer,
) -> None:
    token = make_token(pg_server.db_url, "run")
    huge = b'{"document": "' + b"x" * (6 * 1024 * 1024) + b'"}'

    def chunks():
        for start in range(0, len(huge), 65536):
            yield huge[start : start + 65536]

    with pg_server.client(token) as http:
        for content in (huge, chunks()):
            answer = http.post(
                "/v1/executions", content=content, headers={"content-type": "application/json"}
            )
            assert answer.status_code == 413
            assert answer.headers["content-type"] == "application/problem+json"
            assert answer.json()["exit_code"] == 2  # bad usage, as spane says of its inputs
        assert http.get("/healthz").status_code == 200
