"""Tokens over HTTP: scopes, expired and revoked tokens, wrong ones slowed down, and no token
anywhere it could leak (the database, Redis, the server's log)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
from api_support import ApiServer, make_token, serving
from cluster_support import ROOT, flow, poll

FAILING = flow("doomed", "  a: {type: fail, config: {message: nope}}\n")
HELLO = flow("hello", "  a: {type: noop}\n")


def assert_problem(response: httpx.Response, status: int, kind: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["type"] == f"urn:spane:problem:{kind}" and body["status"] == status
    assert body["title"] and body["detail"]
    return body


def test_each_scope_allows_what_it_names_and_no_more(pg_server: ApiServer) -> None:
    reader = make_token(pg_server.db_url, "read")
    runner = make_token(pg_server.db_url, "run")
    admin = make_token(pg_server.db_url, "admin")
    with pg_server.client(reader) as http:
        assert http.get("/v1/executions").status_code == 200
        refused = http.post("/v1/executions", json={"document": HELLO})
        body = assert_problem(refused, 403, "forbidden")
        assert "scope read" in body["detail"] and reader not in refused.text
    with pg_server.client(runner) as http:
        assert http.post("/v1/executions", json={"document": HELLO}).status_code == 201
        assert_problem(http.post("/v1/dead-letters/purge", json={"all": True}), 403, "forbidden")
        assert_problem(http.delete("/v1/dead-letters/1"), 403, "forbidden")
    with pg_server.client(admin) as http:
        assert http.post("/v1/dead-letters/purge", json={"all": True}).json() == {"purged": 0}


def test_missing_wrong_expired_and_revoked_tokens_are_401(
    pg_server: ApiServer, tmp_path: Path
) -> None:
    now = time.time()
    expired = make_token(pg_server.db_url, "admin", expires=now - 1)
    soon = make_token(pg_server.db_url, "admin", expires=now + 3600)
    revoked = make_token(pg_server.db_url, "admin", name="to-revoke")
    with pg_server.client() as http:
        assert_problem(http.get("/v1/executions"), 401, "unauthenticated")
        assert http.get("/v1/executions").headers["www-authenticate"].startswith("Bearer")
    for token in (expired, soon[:-1] + ("A" if soon[-1] != "A" else "B"), "spane_x", "Basic"):
        with pg_server.client(token) as http:
            refused = http.get("/v1/executions")
            assert_problem(refused, 401, "unauthenticated")
            assert token not in refused.text
    with pg_server.client(soon) as http:
        assert http.get("/v1/executions").status_code == 200
    with pg_server.client(revoked) as http:
        assert http.get("/v1/executions").status_code == 200
        revoking = subprocess.run(
            [sys.executable, "-m", "spane_cli", "token", "revoke", "to-revoke"],
            env=pg_server.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert revoking.returncode == 0, revoking.stderr
        assert_problem(http.get("/v1/executions"), 401, "unauthenticated")


def test_wrong_tokens_from_one_address_are_slowed_down(pg_server: ApiServer) -> None:
    good = make_token(pg_server.db_url, "read")
    wrong = good[:-4] + "AAAA"
    with pg_server.client(wrong) as http:
        first = [http.get("/v1/executions").elapsed.total_seconds() for _ in range(5)]
        for _ in range(20):
            assert http.get("/v1/executions").status_code == 401
        later = [http.get("/v1/executions").elapsed.total_seconds() for _ in range(3)]
    assert max(first) < 0.5, first
    assert min(later) >= 0.1, later  # 25+ failures: at least 0.1 s each
    with pg_server.client(good) as http:  # a right token is not slowed down
        assert http.get("/v1/executions").elapsed.total_seconds() < 0.5


def test_tokens_appear_nowhere_in_the_database_redis_or_the_log(
    fresh_postgres_url: str, redis_url: str, tmp_path: Path
) -> None:
    import psycopg2
    from redis import Redis

    runner = make_token(fresh_postgres_url, "run")
    wrong = runner[:-6] + "zzzzzz"
    secrets = [runner, runner.split("_", 2)[-1][-20:], wrong, wrong[-20:]]
    with serving(fresh_postgres_url, redis_url, tmp_path) as server:
        with server.client(runner) as http:
            started = http.post("/v1/executions", json={"document": FAILING})
            execution_id = started.json()["id"]
            http.get(f"/v1/executions/{execution_id}")
            http.post(f"/v1/executions/{execution_id}/cancel")
            http.get("/v1/executions", params={"workflow": "doomed"})
            http.post("/v1/executions", json={"document": "name: [", "filename": "x.yaml"})
        with server.client(wrong) as http:
            assert http.get("/v1/executions").status_code == 401
        poll(lambda: "POST /v1/executions" in server.log(), what="the access log")
    log = server.log()
    with psycopg2.connect(fresh_postgres_url) as connection, connection.cursor() as cursor:
        cursor.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        )
        dump = []
        for (table,) in cursor.fetchall():
            cursor.execute(f'SELECT * FROM "{table}"')
            dump.append(repr(cursor.fetchall()))
    database = "\n".join(dump)
    assert execution_id in database  # the dump is of this test's database
    connection.close()
    with Redis.from_url(redis_url) as redis:
        stored = [repr(key) + repr(redis.dump(key)) for key in redis.scan_iter()]
    assert stored  # the run's job went through this Redis
    for secret in secrets:
        assert secret not in log
        assert secret not in database
        assert not any(secret in entry for entry in stored)
