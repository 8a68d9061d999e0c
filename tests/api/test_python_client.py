"""`import spane`: the client against a real server with a real worker, and the local client
on the same store giving the same answers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import spane
from api_support import make_token, serving
from cluster_support import Cluster, flow, poll

HELLO = flow("client-hello", "  a: {type: noop}\n  b: {type: noop, needs: [a]}\n")


class CutOnce(httpx.HTTPTransport):
    """Breaks the first event stream after its first chunk, as a dropped connection does."""

    def __init__(self) -> None:
        super().__init__()
        self.cuts = 0
        self.resumed_from: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        if not request.url.path.endswith("/events"):
            return response
        self.resumed_from.append(request.headers.get("last-event-id", ""))
        if self.cuts:
            return response
        self.cuts += 1
        original = response.stream

        class Cut(httpx.SyncByteStream):
            def __iter__(self) -> Iterator[bytes]:
                for chunk in original:  # type: ignore[union-attr]
                    yield chunk
                    raise httpx.ReadError("connection dropped")

            def close(self) -> None:
                original.close()  # type: ignore[union-attr]

        return httpx.Response(
            response.status_code, headers=response.headers, stream=Cut(), request=request
        )


def test_the_client_runs_follows_and_waits_and_the_local_one_agrees(
    cluster: Cluster, tmp_path: Path
) -> None:
    cluster.start_worker()
    gate = cluster.gate("held")
    held = flow("client-held", f"  hold: {{type: shell, config: {{run: '{gate.wait}'}}}}\n")
    with serving(cluster.db_url, cluster.redis_url, tmp_path) as server:
        token = make_token(server.db_url, "run")
        transport = CutOnce()
        with spane.Client(server.url, token, transport=transport) as client:
            started = client.run_file(HELLO, idempotency_key="client-1")
            assert isinstance(started, spane.Started) and started.created
            assert client.run_file(HELLO, idempotency_key="client-1") == spane.Started(
                started.id, False
            )
            events = list(client.events(started.id))
            assert transport.cuts == 1 and len(transport.resumed_from) == 2
            assert transport.resumed_from[1] not in ("", "0")  # it resumed after an event
            finished = client.wait(started.id, timeout=60)
            assert finished["status"] == "succeeded"
            again = client.run("client-hello", {}, version=1)
            assert client.wait(again.id, timeout=60)["status"] == "succeeded"

            waiting = client.run_file(held)
            poll(lambda: cluster.node_status(waiting.id, "hold") == "running", what="hold")
            with pytest.raises(spane.WaitTimeout) as timed_out:
                client.wait(waiting.id, timeout=0.2)
            assert timed_out.value.execution["status"] == "running"
            assert client.cancel(waiting.id) == {"id": waiting.id, "status": "cancelled"}
            with pytest.raises(spane.Conflict):
                client.cancel(waiting.id)

            with pytest.raises(spane.NotFound):
                client.get("no-such-execution")
            with pytest.raises(spane.InvalidWorkflow) as invalid:
                client.run_file("version: 1\nname: broken\nnodes:\n  a: {type: nope}\n")
            assert invalid.value.status == 422 and invalid.value.problems[0]["line"] == 4
            with pytest.raises(spane.NotFound):
                client.run("never-registered")
        with (
            spane.Client(server.url, "not-a-token") as stranger,
            pytest.raises(spane.Unauthenticated),
        ):
            stranger.get(started.id)
        gate.open()

    expected = [json.loads(json.dumps(e)) for e in cluster.events(started.id)]
    assert events == expected
    with spane.Client.local(cluster.db_url, cluster.redis_url) as local:
        assert local.get(started.id) == without_null_items(finished)
        assert list(local.events(started.id)) == expected
        assert list(local.events(started.id, after=expected[2]["id"])) == expected[3:]
        ran = local.run("client-hello", {}, idempotency_key="local-1")
        assert local.wait(ran.id, timeout=60)["status"] == "succeeded"
        assert local.run("client-hello", idempotency_key="local-1") == spane.Started(ran.id, False)
        with pytest.raises(spane.NotFound):
            local.get("no-such-execution")
        with pytest.raises(spane.InvalidWorkflow):
            local.run_file("version: 1\nname: broken\nnodes:\n  a: {type: nope}\n")
        with pytest.raises(spane.Conflict):
            local.cancel(ran.id)


def without_null_items(execution: dict[str, Any]) -> dict[str, Any]:
    """The server's document names `items: null` for nodes that are no foreach; the SPEC's
    shape (`spane get -o json`) leaves it out."""
    nodes = {
        node_id: {k: v for k, v in node.items() if not (k == "items" and v is None)}
        for node_id, node in execution["nodes"].items()
    }
    return {**execution, "nodes": nodes}


def test_import_spane_is_the_client_itself() -> None:
    from spane.errors import NotFound

    from spane_cli.client import errors, http, local

    assert spane.Client is http.Client and spane.LocalClient is local.LocalClient
    assert NotFound is errors.NotFound is spane.NotFound
    problem: dict[str, Any] = {"type": "urn:spane:problem:forbidden", "detail": "no"}
    assert isinstance(errors.from_problem(403, problem), spane.Forbidden)


def test_every_package_of_the_source_is_installed() -> None:
    """pyproject.toml lists the packages by hand (`spane` is mapped to a folder inside
    spane_cli): a new package left out of the list would be missing from a plain install."""
    import tomllib

    root = Path(__file__).resolve().parents[2]
    listed = set(
        tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = {
        ".".join(path.parent.relative_to(root).parts)
        for path in (root / "spane_cli").rglob("__init__.py")
    } - {"spane_cli.client.spane"}
    assert found | {"spane"} == listed
