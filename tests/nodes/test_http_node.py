"""The http node against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
import socket

from spane_cli.nodes.http import HttpNode
from spane_cli.states import OutcomeKind


def test_get_json(context_for, http_server):
    result = HttpNode().run(context_for({"url": f"{http_server}/json"}))
    assert result.outcome == OutcomeKind.SUCCEEDED, result.error
    assert result.output["status"] == 200
    assert result.output["json"] == {"items": [1, 2], "ok": True}
    assert "text" not in result.output
    assert result.output["headers"]["x-test"] == "yes"
    assert result.logs.startswith(f"GET {http_server}/json -> 200 (")


def test_text_response(context_for, http_server):
    result = HttpNode().run(context_for({"url": f"{http_server}/text"}))
    assert result.output["text"] == "hello text"
    assert "json" not in result.output


def test_post_json_body_headers_and_params(context_for, http_server):
    config = {
        "method": "POST",
        "url": f"{http_server}/echo",
        "headers": {"X-Who": "{{ input.who }}"},
        "params": {"page": "{{ input.page }}"},
        "json": {"n": "{{ input.page }}", "who": "{{ input.who }}"},
    }
    result = HttpNode().run(context_for(config, input={"who": "ann", "page": 2}))
    assert result.outcome == OutcomeKind.SUCCEEDED, result.error
    echo = result.output["json"]
    assert echo["method"] == "POST"
    assert echo["path"] == "/echo?page=2"
    assert echo["headers"]["x-who"] == "ann"
    assert echo["headers"]["content-type"] == "application/json"
    assert json.loads(echo["body"]) == {"n": 2, "who": "ann"}


def test_raw_body(context_for, http_server):
    config = {"method": "PUT", "url": f"{http_server}/echo", "body": "line {{ input }}"}
    result = HttpNode().run(context_for(config, input=7))
    assert result.output["json"]["body"] == "line 7"


def test_unexpected_status_fails_with_the_body_in_details(context_for, http_server):
    result = HttpNode().run(context_for({"url": f"{http_server}/status/500"}))
    assert result.outcome == OutcomeKind.FAILED
    assert result.error == f"HTTP 500 from GET {http_server}/status/500\nserver says no"


def test_expect_lists_the_statuses_that_succeed(context_for, http_server):
    found = HttpNode().run(context_for({"url": f"{http_server}/status/404", "expect": [404]}))
    assert found.outcome == OutcomeKind.SUCCEEDED
    assert found.output["status"] == 404
    created = HttpNode().run(context_for({"url": f"{http_server}/json", "expect": [201]}))
    assert created.error.splitlines()[0] == f"HTTP 200 from GET {http_server}/json"


def test_connection_refused_is_one_line(context_for):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = HttpNode().run(context_for({"url": f"http://127.0.0.1:{port}/x"}))
    assert result.outcome == OutcomeKind.FAILED
    assert result.error.startswith(f"GET http://127.0.0.1:{port}/x failed: ")
    assert "refused" in result.error.lower()
    assert "\n" not in result.error


def test_timeout(context_for, http_server):
    result = HttpNode().run(context_for({"url": f"{http_server}/slow", "timeout": "300ms"}))
    assert result.error == f"GET {http_server}/slow timed out after 300ms"


def test_node_timeout_bounds_the_request(context_for, http_server):
    result = HttpNode().run(context_for({"url": f"{http_server}/slow"}, timeout=0.2))
    assert result.error == f"GET {http_server}/slow timed out after 200ms"


def test_secrets_are_masked_in_url_error_and_output(context_for, http_server):
    secrets = {"TOKEN": "s3cr3t-value"}
    config = {
        "url": http_server + "/status/503?key={{ secrets.TOKEN }}",
        "headers": {"Authorization": "Bearer {{ secrets.TOKEN }}"},
    }
    failed = HttpNode().run(context_for(config, secrets=secrets))
    assert failed.error.splitlines()[0] == f"HTTP 503 from GET {http_server}/status/503?key=***"
    assert "s3cr3t-value" not in failed.logs

    config["url"] = http_server + "/echo?key={{ secrets.TOKEN }}"
    echoed = HttpNode().run(context_for(config, secrets=secrets))
    assert echoed.output["json"]["headers"]["authorization"] == "Bearer ***"
    assert "s3cr3t-value" not in json.dumps(echoed.output) + echoed.logs


def test_render_error_names_the_field(context_for, http_server):
    result = HttpNode().run(context_for({"url": f"{http_server}/json", "json": {"a": "{{ x }}"}}))
    assert result.error.startswith("config.json: ")


def test_the_query_string_of_the_url_is_kept(context_for, http_server):
    alone = HttpNode().run(
        context_for({"url": f"{http_server}/echo?date={{{{ input }}}}"}, input=7)
    )
    assert alone.output["json"]["path"] == "/echo?date=7"
    config = {"url": f"{http_server}/echo?date=7", "params": {"page": "2"}}
    merged = HttpNode().run(context_for(config))
    assert merged.output["json"]["path"] == "/echo?date=7&page=2"


def test_a_redirect_to_another_host_drops_the_headers_that_carry_secrets(context_for, http_server):
    port = http_server.rsplit(":", 1)[1]
    headers = {"X-Token": "Bearer {{ secrets.TOKEN }}", "X-Plain": "visible"}
    secrets = {"TOKEN": "t0ken-value"}
    elsewhere = f"http://localhost:{port}/echo"  # another origin: another host name
    config = {"url": f"{http_server}/redirect?to={elsewhere}", "headers": headers}
    moved = HttpNode().run(context_for(config, secrets=secrets))
    assert moved.outcome == OutcomeKind.SUCCEEDED, moved.error
    seen = moved.output["json"]["headers"]
    assert "x-token" not in seen and seen["x-plain"] == "visible"
    same = {"url": f"{http_server}/redirect?to={http_server}/echo", "headers": headers}
    kept = HttpNode().run(context_for(same, secrets=secrets))
    assert kept.output["json"]["headers"]["x-token"] == "Bearer ***"  # sent, masked in output
