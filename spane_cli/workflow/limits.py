"""Rate limits and circuit breakers as a workflow file states them: the rate syntax, the keys
of `rate_limits:`, the host an http node calls, and what applies to each node.

Decided once, when the model is built: a node with no limit and no breaker carries nothing,
so the engine's fast paths never ask Redis or the database about it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from spane_cli.workflow.durations import parse_duration

_UNITS = {
    "s": 1, "sec": 1, "second": 1,
    "m": 60, "min": 60, "minute": 60,
    "h": 3600, "hour": 3600,
    "d": 86400, "day": 86400,
}  # fmt: skip
# `10/s`, `100/min`, `5/30s`, `1000/h`: so many starts per window (a whole number of units).
RATE_PATTERN = r"^[1-9][0-9]{0,8}/([1-9][0-9]{0,6})?(s|sec|second|m|min|minute|h|hour|d|day)$"
RATE_HINT = "write starts per window, like 10/s, 100/min, 5/30s or 1000/h"
_RATE = re.compile(RATE_PATTERN)
# The keys of `rate_limits:`: this workflow, or its nodes of a type, on a queue, or calling
# a host (an http node's URL host, with its port when the URL names one).
HOST_PATTERN = r"[A-Za-z0-9]([A-Za-z0-9.-]{0,252})(:[0-9]{1,5})?"
LIMIT_KEY_PATTERN = (
    r"^(workflow|type:[A-Za-z0-9_.-]{1,64}|queue:[A-Za-z0-9_.:-]{1,64}|host:" + HOST_PATTERN + ")$"
)
BREAKER_HOST_PATTERN = "^" + HOST_PATTERN + "$"
ON_OPEN = ("fail", "wait")


class RateError(ValueError):
    """A rate that is not `N/unit` or `N/<count><unit>`."""


@dataclass(frozen=True)
class Rate:
    amount: int  # starts allowed
    per: int  # in a moving window of this many seconds
    text: str  # as written

    @property
    def per_second(self) -> float:
        return self.amount / self.per


def parse_rate(text: object) -> Rate:
    if not isinstance(text, str) or not (match := _RATE.match(text.strip())):
        raise RateError(f"invalid rate {text!r}: {RATE_HINT}")
    amount = int(text.strip().split("/", 1)[0])
    multiple = int(match.group(1) or 1)
    return Rate(amount, multiple * _UNITS[match.group(2)], text.strip())


@dataclass(frozen=True)
class RateLimit:
    """One limit a node's start counts against."""

    key: str  # as an operator reads it: `type:http`, `host:api.example.com`, `node:fetch`
    bucket: str  # what is counted, shared across workflows: `workflow:NAME`, `node:NAME.ID`
    rate: Rate

    def describe(self) -> str:
        return f"rate limit {self.key} ({self.rate.text})"


@dataclass(frozen=True)
class BreakerSpec:
    """A circuit breaker on the host an http node calls (state: store/breakers.py)."""

    host: str
    failures: int = 5  # failures within `window` that open it
    window: float = 60.0
    open_for: float = 30.0  # how long it stays open before one probe may try
    on_open: str = "fail"  # fail: nodes fail at once; wait: they wait, holding no worker


def url_host(config: Mapping[str, Any]) -> str | None:
    """The host (and port, when named) an http node's URL calls, when the file says it
    literally: a template may follow the host (`https://api.example.com/{{ item }}`)."""
    url = config.get("url")
    if not isinstance(url, str):
        return None
    literal = url.split("{{", 1)[0]
    try:
        parts = urlsplit(literal)
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname or ("{{" in url and not parts.path and not parts.query):
        return None  # the host itself (or its port) is rendered when the node runs
    return f"{parts.hostname}:{port}" if port is not None else parts.hostname


def breaker_spec(host: str, data: Mapping[str, Any]) -> BreakerSpec:
    return BreakerSpec(
        host=host,
        failures=int(data.get("failures", 5)),
        window=parse_duration(data.get("window", 60)),
        open_for=parse_duration(data.get("open_for", 30)),
        on_open=str(data.get("on_open", "fail")),
    )


def _breaker_for(host: str | None, breakers: Mapping[str, Any]) -> BreakerSpec | None:
    if host is None:
        return None
    bare = host.split(":", 1)[0]
    for key in (host, bare, "*"):
        if key in breakers:
            return breaker_spec(host, breakers[key] or {})
    return None


def node_controls(
    workflow: str,
    node_id: str,
    raw: Mapping[str, Any],
    defaults: Mapping[str, Any],
    file_limits: Mapping[str, Any],
    breakers: Mapping[str, Any],
) -> tuple[tuple[RateLimit, ...], BreakerSpec | None]:
    """The rate limits a node's start counts against, and the breaker of the host it calls."""
    node_type = raw["type"]
    queue = raw.get("queue", defaults.get("queue", "default"))
    host = url_host(raw.get("config") or {}) if node_type == "http" else None
    found: list[RateLimit] = []
    own = raw.get("rate_limit", defaults.get("rate_limit"))
    if own is not None:
        found.append(RateLimit(f"node:{node_id}", f"node:{workflow}.{node_id}", parse_rate(own)))
    wanted = {"workflow": f"workflow:{workflow}", f"type:{node_type}": f"type:{node_type}",
              f"queue:{queue}": f"queue:{queue}"}  # fmt: skip
    if host is not None:
        wanted[f"host:{host}"] = f"host:{host}"
        bare = host.split(":", 1)[0]
        if bare != host:
            wanted[f"host:{bare}"] = f"host:{bare}"
    for key, text in file_limits.items():
        if key in wanted:
            found.append(RateLimit(key, wanted[key], parse_rate(text)))
    breaker = _breaker_for(host, breakers) if node_type == "http" else None
    return tuple(found), breaker
