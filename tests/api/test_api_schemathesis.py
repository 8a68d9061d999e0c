"""Schemathesis against a live server, from its own OpenAPI document: with a token (admin)
and without one, no answer is a 500 and every answer matches the document."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from api_support import ApiServer, make_token, serving
from cluster_support import ROOT, flow

# Property-based runs are bounded in examples and time, so the file fits the suite on a 2-core
# machine; SPANE_SCHEMATHESIS_EXAMPLES=100 runs a deeper search by hand.
MAX_EXAMPLES = os.environ.get("SPANE_SCHEMATHESIS_EXAMPLES", "3")
MAX_SECONDS = os.environ.get("SPANE_SCHEMATHESIS_SECONDS", "150")
# The suite runs the phases that reach every operation in seconds: the documented examples and
# the coverage phase's edge cases of every parameter and body, valid and not. The fuzzing and
# stateful phases take minutes here; a deep run asks for them (docs/api.md):
# SPANE_SCHEMATHESIS_PHASES=examples,coverage,fuzzing,stateful.
PHASES = os.environ.get("SPANE_SCHEMATHESIS_PHASES", "examples,coverage")
# Without a token every route but three answers 401: the coverage phase's edge cases say all
# there is to say, the deeper phases only repeat it (unless asked for by PHASES).
PHASES_WITHOUT_TOKEN = os.environ.get("SPANE_SCHEMATHESIS_PHASES", "examples,coverage")
# A fixed seed: a failure in CI is the same failure on a laptop (SPANE_SCHEMATHESIS_SEED).
SEED = os.environ.get("SPANE_SCHEMATHESIS_SEED", "20261202")


def schemathesis(
    server: ApiServer, tmp_path: Path, phases: str, *headers: str
) -> subprocess.CompletedProcess:
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "run",
        f"{server.url}/openapi.json",
        "--checks",
        "all",
        "--max-examples",
        MAX_EXAMPLES,
        "--max-time",
        MAX_SECONDS,
        "--phases",
        phases,
        # One: on Python 3.11 before 3.11.8, compile() on two threads at once can fail
        # ("AST constructor recursion depth mismatch"), and schemathesis compiles its checks.
        "--workers",
        "1",
        "--seed",
        SEED,
        "--request-timeout",
        "30",
        "--no-color",
        *(part for header in headers for part in ("-H", header)),
    ]
    # From the repository's root, so schemathesis.toml there applies.
    return subprocess.run(
        command, capture_output=True, text=True, timeout=int(MAX_SECONDS) + 120, cwd=ROOT
    )


@pytest.mark.timeout(int(MAX_SECONDS) + 300)
@pytest.mark.parametrize("with_token", [True, False], ids=["admin-token", "no-token"])
def test_schemathesis_finds_no_server_error_and_no_mismatch(
    fresh_postgres_url: str, redis_url: str, tmp_path: Path, with_token: bool
) -> None:
    with serving(fresh_postgres_url, redis_url, tmp_path) as server:
        token = make_token(fresh_postgres_url, "admin")
        with server.client(token) as http:  # something to find: a workflow and a run
            hello = flow("hello", "  a: {type: noop}\n")
            assert http.post("/v1/executions", json={"document": hello}).status_code == 201
        # A worker ends the runs the fuzzer starts, so that their event and log streams end
        # too (a stream follows a live run until it ends).
        worker = subprocess.Popen(
            [sys.executable, "-m", "spane_cli", "worker", "--concurrency", "1"],
            env=server.env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            headers = [f"Authorization: Bearer {token}"] if with_token else []
            phases = PHASES if with_token else PHASES_WITHOUT_TOKEN
            ran = schemathesis(server, tmp_path, phases, *headers)
        finally:
            worker.terminate()
            worker.wait(timeout=30)
        print(ran.stdout[-20000:], ran.stderr[-5000:])
        assert ran.returncode == 0, ran.stdout[-6000:]
