"""200 run creations at once against one server on PostgreSQL: every one is accepted."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
from api_support import ApiServer, make_token
from cluster_support import flow

CREATIONS = 200
HELLO = flow("crowd", "  a: {type: noop}\n")


def test_200_concurrent_run_creations_are_all_accepted(pg_server: ApiServer) -> None:
    token = make_token(pg_server.db_url, "run")
    with pg_server.client(token) as http:
        assert http.post("/v1/executions", json={"document": HELLO}).status_code == 201
    start = threading.Barrier(CREATIONS)
    uploaded = flow("crowd-upload", "  a: {type: noop}\n")  # registered by the crowd itself

    def create(index: int) -> tuple[int, str, float]:
        body = {"workflow": "crowd"} if index % 2 else {"document": uploaded}
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=pg_server.url, headers=headers, timeout=120) as client:
            start.wait(timeout=60)
            began = time.perf_counter()
            answer = client.post("/v1/executions", json=body)
            return answer.status_code, answer.text, time.perf_counter() - began

    began = time.perf_counter()
    with ThreadPoolExecutor(CREATIONS) as pool:
        results = list(pool.map(create, range(CREATIONS)))
    took = time.perf_counter() - began
    statuses = [status for status, _, _ in results]
    assert statuses == [201] * CREATIONS, [text for status, text, _ in results if status != 201]
    ids = {httpx.Response(201, text=text).json()["id"] for _, text, _ in results}
    assert len(ids) == CREATIONS
    latencies = sorted(seconds for _, _, seconds in results)
    print(
        f"{CREATIONS} creations in {took:.2f}s; latency p50 {latencies[CREATIONS // 2]:.2f}s"
        f" p99 {latencies[int(CREATIONS * 0.99)]:.2f}s"
    )
    with pg_server.client(token) as http:
        listed = http.get("/v1/executions", params={"limit": 1000}).json()["items"]
        assert ids <= {item["id"] for item in listed}
        versions = http.get("/v1/workflows/crowd-upload/versions").json()
        assert [v["version"] for v in versions] == [1]  # registered once
