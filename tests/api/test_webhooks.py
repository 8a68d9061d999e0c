"""Webhooks of a real `spane serve` with a real worker on PostgreSQL: good, bad, missing and
replayed signatures, redeliveries, an oversized body, and the secret nowhere on disk."""

from __future__ import annotations

import contextlib
import json
import subprocess
import uuid
from pathlib import Path
from typing import Any

import httpx
import redis
from api_support import make_token, serving
from cluster_support import Cluster, poll

from spane_cli.engine.hook_secrets import sign

DEPLOY = "version: 1\nname: deploy\ninputs:\n  ref: {type: string}\nnodes:\n  ship: {type: noop}\n"


def create_hook(cluster: Cluster, workflow: str) -> tuple[str, str]:
    made = cluster.spane("hook", "create", workflow, "-o", "json")
    assert made.returncode == 0, made.stderr
    shown = json.loads(made.stdout)
    return str(shown["url"]), str(shown["secret"])


def post(
    http: httpx.Client,
    body: bytes,
    signature: str | None,
    delivery: str | None = None,
    workflow: str = "deploy",
) -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["X-Hub-Signature-256"] = signature
    if delivery is not None:
        headers["X-GitHub-Delivery"] = delivery
    return http.post(f"/v1/hooks/{workflow}", content=body, headers=headers)


def executions_of(cluster: Cluster, workflow: str) -> int:
    return int(
        cluster.query("SELECT count(*) FROM execution WHERE workflow = %s", (workflow,))[0][0]
    )


def test_signed_deliveries_start_runs_and_nothing_else_does(
    cluster: Cluster, tmp_path: Path
) -> None:
    cluster.start_worker()
    with serving(cluster.db_url, cluster.redis_url, tmp_path) as server:
        token = make_token(server.db_url, "run")
        with server.client(token) as http:
            assert http.post("/v1/executions", json={"document": DEPLOY, "input": {"ref": "x"}})
        url, secret = create_hook(cluster, "deploy")
        assert url == "http://127.0.0.1:8080/v1/hooks/deploy"
        body = json.dumps({"ref": "v1.2.3"}).encode()
        delivery = str(uuid.uuid4())
        with server.client() as http:  # no bearer token: the signature is the credential
            first = post(http, body, sign(secret, body), delivery)
            assert first.status_code == 201, first.text
            execution_id = first.json()["id"]
            assert first.json() == {
                "id": execution_id,
                "created": True,
                "workflow": "deploy",
                "delivery": delivery,
            }
            poll(lambda: cluster.status(execution_id) == "succeeded", what="the hook's run")
            assert cluster.get(execution_id)["input"] == {"ref": "v1.2.3"}

            # A redelivery (same delivery id, same body): the same execution, nothing new.
            again = post(http, body, sign(secret, body), delivery)
            assert again.status_code == 200 and again.json()["id"] == execution_id
            assert again.json()["created"] is False
            count = executions_of(cluster, "deploy")

            refused = {
                "replayed": post(http, body, sign(secret, body), str(uuid.uuid4())),
                "replayed without delivery id": post(http, body, sign(secret, body)),
                "bad": post(http, body, sign("not-the-secret", body), str(uuid.uuid4())),
                "tampered": post(http, b'{"ref": "evil"}', sign(secret, body), "t-1"),
                "missing": post(http, body, None, str(uuid.uuid4())),
                "malformed": post(http, body, "sha1=abc", str(uuid.uuid4())),
                "no such hook": post(http, body, sign(secret, body), "n-1", workflow="nope"),
            }
            for what, response in refused.items():
                assert response.status_code == 401, (what, response.text)
                assert response.headers["content-type"] == "application/problem+json", what
                assert response.json()["type"] == "urn:spane:problem:unauthenticated", what

            other = json.dumps({"ref": "v2"}).encode()
            reused = post(http, other, sign(secret, other), delivery)
            assert reused.status_code == 409, reused.text

            huge = json.dumps({"ref": "x" * (1024 * 1024)}).encode()
            too_large = post(http, huge, sign(secret, huge), "big-1")
            assert too_large.status_code == 413, too_large.text
            assert too_large.headers["content-type"] == "application/problem+json"
            assert too_large.json()["exit_code"] == 2

            bad_input = json.dumps({"nope": 1}).encode()
            rejected = post(http, bad_input, sign(secret, bad_input), "in-1")
            assert rejected.status_code == 400, rejected.text
            assert executions_of(cluster, "deploy") == count

            # Rotation: a new secret, and the old one no longer signs.
            _, rotated = create_hook(cluster, "deploy")
            assert rotated != secret
            fresh = json.dumps({"ref": "v3"}).encode()
            assert post(http, fresh, sign(secret, fresh), "r-1").status_code == 401
            assert post(http, fresh, sign(rotated, fresh), "r-2").status_code == 201
        listed = cluster.spane("hook", "list", "-o", "json")
        assert [h["deliveries"] for h in json.loads(listed.stdout)] == [2]
        assert cluster.spane("hook", "rm", "deploy").returncode == 0
        assert cluster.spane("hook", "rm", "deploy").returncode == 4
        secrets_used = [secret, rotated]
        log = server.log()
    found = _places_holding(cluster, secrets_used) + [
        "server log" for s in secrets_used if s in log
    ]
    assert found == []


def _places_holding(cluster: Cluster, needles: list[str]) -> list[str]:
    """Where the database (a plain pg_dump) and Redis (every key and value) hold a needle."""
    dump = subprocess.run(
        ["pg_dump", "--data-only", cluster.db_url], capture_output=True, text=True, check=True
    ).stdout
    assert "hook_delivery" in dump  # the dump holds the rows that were looked for
    places = [f"database: {n[:6]}..." for n in needles if n in dump]
    with contextlib.closing(redis.Redis.from_url(cluster.redis_url)) as connection:
        for key in connection.scan_iter():
            value: Any = connection.dump(key) or b""
            blob = key + value
            places += [f"redis {key!r}" for n in needles if n.encode() in blob]
    return places
