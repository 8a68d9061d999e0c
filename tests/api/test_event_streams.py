"""Event and log streams of a real `spane serve` with real workers on PostgreSQL: followed to
the end over SSE with the connection cut and resumed (nothing lost, nothing twice), NDJSON,
and many followers costing one query per look in total."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx
from api_support import ApiServer, make_token, serving
from cluster_support import Cluster, flow, poll
from sse_support import messages


def gated_flow(name: str, cluster: Cluster) -> tuple[str, Any]:
    gate = cluster.gate(name)
    document = flow(
        name,
        "  a: {type: shell, config: {run: 'echo one'}}\n"
        f"  b: {{type: shell, needs: [a], config: {{run: 'echo two; {gate.wait}; echo three'}}}}\n"
        "  c: {type: noop, needs: [b]}\n",
    )
    return document, gate


def start(http: httpx.Client, document: str) -> str:
    started = http.post("/v1/executions", json={"document": document})
    assert started.status_code == 201, started.text
    return str(started.json()["id"])


def spane_events(cluster: Cluster, execution_id: str) -> list[dict[str, Any]]:
    """What `spane events -o json` prints."""
    done = cluster.spane("events", execution_id, "-o", "json")
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def test_a_stream_cut_mid_way_resumes_with_nothing_lost_or_repeated(
    cluster: Cluster, tmp_path: Path
) -> None:
    cluster.start_worker()
    with serving(cluster.db_url, cluster.redis_url, tmp_path) as server:
        token = make_token(server.db_url, "run")
        document, gate = gated_flow("streamed", cluster)
        with server.client(token) as http:
            execution_id = start(http, document)
            received: list[dict[str, Any]] = []
            ids: list[str] = []
            # First connection: read until node b has started, then hang up.
            with http.stream("GET", f"/v1/executions/{execution_id}/events") as response:
                assert response.status_code == 200
                assert response.headers["content-type"].startswith("text/event-stream")
                for message in messages(response):
                    assert message.event == "message"
                    received.append(message.json())
                    ids.append(str(message.id))
                    if received[-1]["type"] == "node.started" and received[-1]["node_id"] == "b":
                        break
            gate.open()
            # Resumed, as a reconnecting EventSource does.
            ended = None
            with http.stream(
                "GET",
                f"/v1/executions/{execution_id}/events",
                headers={"Last-Event-ID": ids[-1]},
            ) as response:
                for message in messages(response):
                    if message.event == "end":
                        ended = message.json()
                        break
                    received.append(message.json())
                    ids.append(str(message.id))
        assert ended == {"execution_id": execution_id, "status": "succeeded"}
        assert received == spane_events(cluster, execution_id)
        assert ids == [str(event["id"]) for event in received]
        assert len(set(ids)) == len(ids)


def test_logs_stream_as_ndjson_and_events_resume_from_after(
    cluster: Cluster, tmp_path: Path
) -> None:
    cluster.start_worker()
    with serving(cluster.db_url, cluster.redis_url, tmp_path) as server:
        token = make_token(server.db_url, "read")
        run_token = make_token(server.db_url, "run")
        document, gate = gated_flow("logged", cluster)
        with server.client(run_token) as http:
            execution_id = start(http, document)
        gate.open()
        with server.client(token) as http:
            ndjson = {"Accept": "application/x-ndjson"}
            with http.stream(
                "GET", f"/v1/executions/{execution_id}/logs?node=b", headers=ndjson
            ) as response:
                assert response.headers["content-type"].startswith("application/x-ndjson")
                lines = [json.loads(line) for line in response.iter_lines() if line]
            assert "".join(line["text"] for line in lines) == "two\nthree\n"
            assert {line["node_id"] for line in lines} == {"b"}
            everything = spane_events(cluster, execution_id)
            middle = everything[2]["id"]
            with http.stream(
                "GET", f"/v1/executions/{execution_id}/events?after={middle}", headers=ndjson
            ) as response:
                rest = [json.loads(line) for line in response.iter_lines() if line]
            assert rest == everything[3:]
            # A bad cursor, a missing node, a missing execution: problems, not streams.
            bad = http.get(f"/v1/executions/{execution_id}/events", headers={"Last-Event-ID": "x"})
            assert bad.status_code == 422  # as every parameter its document refuses
            assert bad.headers["content-type"] == "application/problem+json"
            assert http.get(f"/v1/executions/{execution_id}/logs?node=nope").status_code == 404
            assert http.get("/v1/executions/no-such-one/events").status_code == 404
            # Cursors past every id: refused beyond the document's bound, else nothing to
            # send; and neither breaks the one reader the streams after them share.
            events = f"/v1/executions/{execution_id}/events"
            assert http.get(f"{events}?after={2**80}").status_code == 422
            far = {**ndjson, "Last-Event-ID": "9" * 16}
            assert http.get(events, headers=far).text == ""
            assert http.get(f"{events}?after={2**53}", headers=ndjson).text == ""
            again = http.get(events, headers=ndjson).text.splitlines()
            assert [json.loads(line) for line in again] == everything
        with server.client() as anonymous:
            assert anonymous.get(f"/v1/executions/{execution_id}/events").status_code == 401


async def _follow(url: str, token: str, execution_id: str) -> list[int]:
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/x-ndjson"}
    async with (
        httpx.AsyncClient(base_url=url, headers=headers, timeout=120) as http,
        http.stream("GET", f"/v1/executions/{execution_id}/events") as response,
    ):
        assert response.status_code == 200
        return [json.loads(line)["id"] async for line in response.aiter_lines() if line]


def _stats(server: ApiServer, token: str) -> dict[str, Any]:
    with server.client(token) as http:
        return dict(http.get("/v1/streams").json())


def test_fifty_followers_cost_one_query_per_look(cluster: Cluster, tmp_path: Path) -> None:
    cluster.start_worker()
    with serving(cluster.db_url, cluster.redis_url, tmp_path) as server:
        token = make_token(server.db_url, "run")
        document, gate = gated_flow("watched", cluster)
        with server.client(token) as http:
            execution_id = start(http, document)
        poll(lambda: cluster.node_status(execution_id, "b") == "running", what="b running")

        async def scenario() -> tuple[list[list[int]], dict[str, Any], dict[str, Any], float]:
            followers = [
                asyncio.create_task(_follow(server.url, token, execution_id)) for _ in range(50)
            ]
            while (await asyncio.to_thread(_stats, server, token))["followers"] < 50:
                await asyncio.sleep(0.05)
            before = await asyncio.to_thread(_stats, server, token)
            started = time.monotonic()
            await asyncio.sleep(3)  # 50 followers, about 10 looks
            after = await asyncio.to_thread(_stats, server, token)
            elapsed = time.monotonic() - started
            gate.open()
            return await asyncio.gather(*followers), before, after, elapsed

        results, before, after, elapsed = asyncio.run(scenario())
        polls = after["polls"] - before["polls"]
        queries = after["queries"] - before["queries"]
        print(f"50 followers, {elapsed:.1f}s: {polls} looks, {queries} queries")
        assert before["followers"] == 50 and before["executions"] == 1
        assert queries == polls  # one statement per look for all fifty
        assert 1 <= polls <= elapsed / after["interval_seconds"] + 2
        expected = [event["id"] for event in spane_events(cluster, execution_id)]
        assert all(ids == expected for ids in results)
        poll(lambda: _stats(server, token)["followers"] == 0, what="the streams closed")
