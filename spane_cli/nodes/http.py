"""`http`: one HTTP request with httpx; an unexpected status fails the node."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any, ClassVar

from spane_cli.nodes.base import NodeContext, NodeResult
from spane_cli.nodes.common import (
    OUTPUT_CAP_BYTES,
    ConfigError,
    as_text,
    mask_value,
    render_field,
)
from spane_cli.text import error_line
from spane_cli.workflow.durations import format_duration, parse_duration
from spane_cli.workflow.model import thaw
from spane_cli.workflow.node_configs import HTTP

if TYPE_CHECKING:
    import httpx

DEFAULT_TIMEOUT_SECONDS = 30.0
# How much of an unexpected response's body goes into the error details.
ERROR_BODY_CHARS = 1000


def _render_strings(context: NodeContext, field: str, mapping: Any) -> dict[str, str]:
    return {
        name: as_text(render_field(context, f"{field}.{name}", value))
        for name, value in (mapping or {}).items()
    }


def _timeout(context: NodeContext, config: dict[str, Any]) -> float:
    """The request's own `timeout`, never longer than the node's attempt may take."""
    limits = [parse_duration(config["timeout"])] if "timeout" in config else []
    if context.timeout is not None:
        limits.append(context.timeout)
    return min(limits) if limits else DEFAULT_TIMEOUT_SECONDS


def _is_json(response: httpx.Response) -> bool:
    media_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
    return media_type == "application/json" or media_type.endswith("+json")


def _capped_text(text: str) -> str:
    """The beginning of a body is what explains it (status pages, error objects)."""
    data = text.encode("utf-8")
    if len(data) <= OUTPUT_CAP_BYTES:
        return text
    kept = data[:OUTPUT_CAP_BYTES].decode("utf-8", errors="ignore")
    return f"{kept}\n[... {len(data) - OUTPUT_CAP_BYTES} bytes cut ...]"


def _body_output(response: httpx.Response) -> dict[str, Any]:
    if _is_json(response) and response.content:
        try:
            return {"json": response.json()}
        except (json.JSONDecodeError, UnicodeDecodeError):
            pass  # a server that labels a non-JSON body as JSON: keep it as text
    return {"text": _capped_text(response.text)}


MAX_REDIRECTS = 20


class TooManyRedirects(Exception):
    """A chain of redirects longer than MAX_REDIRECTS."""


def _secret_headers(context: NodeContext, headers: dict[str, str]) -> set[str]:
    """Names of the headers whose value carries a secret."""
    secrets = [value for value in context.secrets.values() if value]
    return {name for name, value in headers.items() if any(s in value for s in secrets)}


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return (url.scheme, url.host, url.port)


def _send_following_redirects(
    client: httpx.Client, request: httpx.Request, secret_headers: set[str]
) -> httpx.Response:
    """Follow redirects as a browser does, except that a redirect to another origin loses
    every header that carried a secret (httpx itself drops only Authorization)."""
    origin = _origin(request.url)
    for _ in range(MAX_REDIRECTS + 1):
        response = client.send(request)
        following = response.next_request
        if following is None:
            return response
        if _origin(following.url) != origin:
            for name in secret_headers:
                following.headers.pop(name, None)
        request = following
    raise TooManyRedirects(f"more than {MAX_REDIRECTS} redirects")


class HttpNode:
    type_name: ClassVar[str] = "http"
    config_schema: ClassVar[dict[str, Any]] = HTTP

    def run(self, context: NodeContext) -> NodeResult:
        import httpx  # slow to import; only workers that run http nodes pay for it

        config = thaw(context.config)
        method = str(config.get("method") or "GET").upper()
        try:
            url = as_text(render_field(context, "config.url", config["url"]))
            headers = _render_strings(context, "config.headers", config.get("headers"))
            params = _render_strings(context, "config.params", config.get("params"))
            request_body: dict[str, Any] = {}
            if "json" in config:
                request_body["json"] = render_field(context, "config.json", config["json"])
            elif "body" in config:
                request_body["content"] = as_text(
                    render_field(context, "config.body", config["body"])
                )
        except ConfigError as exc:
            return NodeResult.failed(context.mask(str(exc)))
        timeout = _timeout(context, config)
        target = context.mask(f"{method} {url}")

        started = time.monotonic()
        try:
            # `params` add to the URL's own query (httpx would replace it, even with none).
            full_url = httpx.URL(url).copy_merge_params(params) if params else httpx.URL(url)
            with httpx.Client(timeout=timeout) as client:
                request = client.build_request(method, full_url, headers=headers, **request_body)
                response = _send_following_redirects(
                    client, request, _secret_headers(context, headers)
                )
        except TooManyRedirects as exc:
            return NodeResult.failed(context.mask(f"{target} failed: {exc}"))
        except httpx.TimeoutException:
            return NodeResult.failed(f"{target} timed out after {format_duration(timeout)}")
        except (httpx.HTTPError, httpx.InvalidURL, ValueError) as exc:
            return NodeResult.failed(context.mask(f"{target} failed: {error_line(exc)}"))
        elapsed_ms = round((time.monotonic() - started) * 1000)
        logs = f"{target} -> {response.status_code} ({elapsed_ms} ms)\n"

        expected = config.get("expect")
        if expected is not None:
            ok = response.status_code in expected
        else:
            ok = 200 <= response.status_code < 300
        if not ok:
            body = context.mask(response.text[:ERROR_BODY_CHARS]).strip()
            error = f"HTTP {response.status_code} from {target}"
            return NodeResult.failed(
                f"{error}\n{body}" if body else error,
                context.mask(logs),
                http_status=response.status_code,
            )

        output = {
            "status": response.status_code,
            "headers": dict(response.headers.items()),
            **_body_output(response),
        }
        return NodeResult.ok(mask_value(context, output), context.mask(logs))
