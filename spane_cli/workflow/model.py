"""The workflow model: frozen dataclasses the engine uses unchanged.

`build_workflow` turns already-validated data into a `Workflow`; validation lives in
`validate.py` so that the model never has to cope with a half-valid file.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from functools import cached_property
from types import MappingProxyType
from typing import Any

from spane_cli.workflow.durations import parse_duration
from spane_cli.workflow.limits import BreakerSpec, RateLimit, node_controls
from spane_cli.workflow.schedule_spec import ScheduleSpec, schedule_entries


class TriggerRule(StrEnum):
    ALL_SUCCESS = "all_success"
    ALL_DONE = "all_done"
    ALL_FAILED = "all_failed"
    ONE_SUCCESS = "one_success"
    ONE_FAILED = "one_failed"
    NONE_FAILED = "none_failed"
    NONE_SKIPPED = "none_skipped"
    NONE_FAILED_MIN_ONE_SUCCESS = "none_failed_min_one_success"
    ALL_DONE_MIN_ONE_SUCCESS = "all_done_min_one_success"
    ALL_SKIPPED = "all_skipped"
    ONE_DONE = "one_done"
    ALWAYS = "always"


class Backoff(StrEnum):
    FIXED = "fixed"
    LINEAR = "linear"
    EXPONENTIAL = "exponential"


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 1
    backoff: Backoff = Backoff.FIXED
    delay: float = 0.0
    max_delay: float | None = None
    jitter: bool = False
    when: str | None = None  # a bare expression over the failure; false: no further try

    def delay_before(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before try number `attempt` (2 is the first retry)."""
        retry_number = max(attempt - 1, 1)
        if self.backoff is Backoff.LINEAR:
            wait = self.delay * retry_number
        elif self.backoff is Backoff.EXPONENTIAL:
            wait = self.delay * (2 ** (retry_number - 1))
        else:
            wait = self.delay
        if self.max_delay is not None:
            wait = min(wait, self.max_delay)
        if self.jitter and wait > 0:
            wait *= (rng or random).uniform(0.5, 1.5)
            if self.max_delay is not None:
                wait = min(wait, self.max_delay)
        return wait


@dataclass(frozen=True)
class InputSpec:
    name: str
    schema: Mapping[str, Any]  # the JSON Schema keywords, without default/required/description
    required: bool = False
    has_default: bool = False
    default: Any = None
    description: str | None = None


@dataclass(frozen=True, slots=True)  # slots: a 10,000-node model is held by every worker
class Node:
    id: str
    type: str
    needs: tuple[str, ...] = ()
    config: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    when: str | None = None
    trigger: TriggerRule = TriggerRule.ALL_SUCCESS
    retry: RetryPolicy = RetryPolicy()
    timeout: float | None = None
    queue: str = "default"
    # Higher is taken first from its queue, with aging (see engine/dispatch.py).
    priority: int = 0
    continue_on_fail: bool = False
    foreach: str | list[Any] | None = None
    max_parallel: int | None = None
    description: str | None = None
    # The concurrency pool whose slot it holds while it runs (a `mutex:` is a pool of size 1).
    pool: str | None = None
    # An exit handler: runs once every other node has ended (its `needs` are then every node
    # of the main graph, or other exit handlers).
    on_exit: bool = False
    # The rate limits its start (each foreach item's) counts against, and the circuit breaker
    # of the host an http node calls: none for most nodes, which then never pay for them.
    rate_limits: tuple[RateLimit, ...] = ()
    breaker: BreakerSpec | None = None

    @property
    def is_entry(self) -> bool:
        return not self.needs

    @property
    def gated(self) -> bool:
        """Whether a worker asks a limiter or a breaker before its run (engine/gates.py)."""
        return bool(self.rate_limits) or self.breaker is not None


@dataclass(frozen=True)
class Workflow:
    name: str
    nodes: Mapping[str, Node]  # in file order
    version: int = 1
    description: str | None = None
    inputs: tuple[InputSpec, ...] = ()
    timeout: float | None = None
    output: Any = None  # None: the default {leaf_id: leaf_output}
    source_file: str | None = None
    fail_fast: bool = False  # after the first failure no new node of the main graph starts
    schedules: tuple[ScheduleSpec, ...] = ()  # `schedule:`, applied by `spane schedule apply`
    # Pool sizes the file declares (`pools:`, and 1 for each `mutex:`); `spane pool set` wins.
    pools: Mapping[str, int] = field(default_factory=lambda: _EMPTY)
    max_active: int | None = None  # open executions at most; the others wait, pending
    priority: int = 0  # the default priority of its nodes (each node carries its own)

    def children(self, node_id: str) -> tuple[str, ...]:
        return tuple(n.id for n in self.nodes.values() if node_id in n.needs)

    @property
    def entry_nodes(self) -> tuple[str, ...]:
        return tuple(n.id for n in self.nodes.values() if n.is_entry)

    @property
    def leaf_nodes(self) -> tuple[str, ...]:
        """The main graph's leaves (exit handlers are not part of the main graph)."""
        return main_leaves(self.nodes)

    def drawn_needs(self, node_id: str) -> tuple[str, ...]:
        """The parents a picture of the graph shows: an exit handler that waits for the whole
        main graph is drawn below its leaves, not below every node of it."""
        node = self.nodes[node_id]
        if node.on_exit and not any(self.nodes[p].on_exit for p in node.needs):
            return self.leaf_nodes
        return node.needs

    @cached_property
    def exit_nodes(self) -> frozenset[str]:
        return frozenset(n.id for n in self.nodes.values() if n.on_exit)

    def descendants(self, node_id: str) -> frozenset[str]:
        """Every node reachable from `node_id` through `needs`, itself excluded."""
        known = self._descendants
        if node_id not in known:
            children: dict[str, list[str]] = self._children_of
            found: set[str] = set()
            stack = list(children[node_id])
            while stack:
                child = stack.pop()
                if child not in found:
                    found.add(child)
                    stack.extend(children[child])
            known[node_id] = frozenset(found)
        return known[node_id]

    @cached_property
    def _descendants(self) -> dict[str, frozenset[str]]:
        return {}

    @cached_property
    def _children_of(self) -> dict[str, list[str]]:
        children: dict[str, list[str]] = {node_id: [] for node_id in self.nodes}
        for node in self.nodes.values():
            for parent_id in node.needs:
                children[parent_id].append(node.id)
        return children


def main_leaves(nodes: Mapping[str, Node]) -> tuple[str, ...]:
    """The nodes that are not exit handlers and that no other such node needs."""
    parents = {p for n in nodes.values() if not n.on_exit for p in n.needs}
    return tuple(n for n, node in nodes.items() if n not in parents and not node.on_exit)


_EMPTY: Mapping[str, Any] = MappingProxyType({})
_NO_RETRY = RetryPolicy()


def _freeze(value: Any) -> Any:
    if isinstance(value, dict) and not value:
        return _EMPTY  # shared: most nodes of a big fan-out have no config
    if isinstance(value, dict):
        return MappingProxyType({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


def thaw(value: Any) -> Any:
    """Plain dicts and lists again, e.g. to render a frozen config or write it as JSON."""
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [thaw(v) for v in value]
    return value


def _retry(data: Mapping[str, Any] | None) -> RetryPolicy:
    if not data:
        return _NO_RETRY
    return RetryPolicy(
        attempts=int(data.get("attempts", 1)),
        backoff=Backoff(data.get("backoff", "fixed")),
        delay=parse_duration(data.get("delay", 0)),
        max_delay=parse_duration(data["max_delay"]) if "max_delay" in data else None,
        jitter=bool(data.get("jitter", False)),
        when=data.get("when"),
    )


def _input(name: str, data: Mapping[str, Any]) -> InputSpec:
    schema = {k: v for k, v in data.items() if k not in ("default", "required", "description")}
    return InputSpec(
        name=name,
        schema=_freeze(schema),
        required=bool(data.get("required", False)),
        has_default="default" in data,
        default=data.get("default"),
        description=data.get("description"),
    )


def build_workflow(data: Mapping[str, Any], source_file: str | None = None) -> Workflow:
    """A Workflow from data that has passed validation."""
    defaults = data.get("defaults") or {}
    file_limits = data.get("rate_limits") or {}
    breakers = data.get("circuit_breakers") or {}
    nodes: dict[str, Node] = {}
    for node_id, raw in data["nodes"].items():
        rate_limits, breaker = node_controls(
            data["name"], node_id, raw, defaults, file_limits, breakers
        )
        retry_data = raw.get("retry", defaults.get("retry"))
        timeout = raw.get("timeout", defaults.get("timeout"))
        nodes[node_id] = Node(
            id=node_id,
            type=raw["type"],
            needs=tuple(raw.get("needs") or ()),
            config=_freeze(raw.get("config") or {}),
            when=raw.get("when"),
            trigger=TriggerRule(raw.get("trigger", "all_success")),
            retry=_retry(retry_data),
            timeout=parse_duration(timeout) if timeout is not None else None,
            queue=raw.get("queue", defaults.get("queue", "default")),
            priority=node_priority(data, raw),
            continue_on_fail=bool(raw.get("continue_on_fail", False)),
            foreach=raw.get("foreach"),
            max_parallel=raw.get("max_parallel"),
            description=raw.get("description"),
            pool=_pool_of(raw, defaults),
            on_exit=bool(raw.get("on_exit", False)),
            rate_limits=rate_limits,
            breaker=breaker,
        )
    _attach_exit_handlers(nodes)
    timeout = data.get("timeout")
    return Workflow(
        name=data["name"],
        nodes=MappingProxyType(nodes),
        version=int(data.get("version", 1)),
        description=data.get("description"),
        inputs=tuple(_input(k, v) for k, v in (data.get("inputs") or {}).items()),
        timeout=parse_duration(timeout) if timeout is not None else None,
        output=data.get("output"),
        source_file=source_file,
        fail_fast=bool(data.get("fail_fast", False)),
        pools=_declared_pools(data, defaults),
        max_active=data.get("max_active"),
        priority=int(data.get("priority", 0)),
        schedules=tuple(
            ScheduleSpec.from_data(name, entry)
            for name, entry in schedule_entries(data["name"], data.get("schedule"))
        ),
    )


def node_priority(data: Mapping[str, Any], raw: Mapping[str, Any]) -> int:
    """A node's own `priority`, else the one in `defaults`, else the workflow's, else 0."""
    defaults = data.get("defaults") or {}
    return int(raw.get("priority", defaults.get("priority", data.get("priority", 0))))


def _pool_of(raw: Mapping[str, Any], defaults: Mapping[str, Any]) -> str | None:
    """The node's own `pool`/`mutex` wins over either of them in `defaults`."""
    for source in (raw, defaults):
        name = source.get("pool") or source.get("mutex")
        if name:
            return str(name)
    return None


def _declared_pools(data: Mapping[str, Any], defaults: Mapping[str, Any]) -> Mapping[str, int]:
    sizes = {str(name): int(size) for name, size in (data.get("pools") or {}).items()}
    mutexes = [defaults.get("mutex")] + [raw.get("mutex") for raw in data["nodes"].values()]
    for name in mutexes:
        if name:
            sizes[str(name)] = 1
    return MappingProxyType(sizes)


def _attach_exit_handlers(nodes: dict[str, Node]) -> None:
    """An exit handler that needs no other exit handler needs every node of the main graph,
    whatever they end with: its readiness is decided by the same guarded count-down and
    cascade as any node's. (Every node, not just the leaves: with fail_fast a leaf can be
    skipped while a node above it still runs.)"""
    main = tuple(node_id for node_id, node in nodes.items() if not node.on_exit)
    for node_id, node in nodes.items():
        if node.on_exit and not node.needs:
            nodes[node_id] = replace(node, needs=main, trigger=TriggerRule.ALWAYS)
