"""Workflow files for the benchmark shapes, all made of no-op nodes on one queue."""

from __future__ import annotations

import yaml

BENCH_QUEUE = "spane-bench"


def _workflow(name: str, nodes: dict[str, dict[str, object]]) -> str:
    data = {"version": 1, "name": name, "defaults": {"queue": BENCH_QUEUE}, "nodes": nodes}
    return yaml.safe_dump(data, sort_keys=False)


def fan_out(children: int) -> str:
    nodes: dict[str, dict[str, object]] = {"root": {"type": "noop"}}
    for i in range(children):
        nodes[f"n{i}"] = {"type": "noop", "needs": ["root"]}
    return _workflow(f"bench-fanout-{children}", nodes)


def chain(length: int) -> str:
    nodes: dict[str, dict[str, object]] = {"n0": {"type": "noop"}}
    for i in range(1, length):
        nodes[f"n{i}"] = {"type": "noop", "needs": [f"n{i - 1}"]}
    return _workflow(f"bench-chain-{length}", nodes)


def fan_in(parents: int) -> str:
    nodes: dict[str, dict[str, object]] = {f"p{i}": {"type": "noop"} for i in range(parents)}
    nodes["join"] = {"type": "noop", "needs": [f"p{i}" for i in range(parents)]}
    return _workflow(f"bench-fanin-{parents}", nodes)


def small() -> str:
    return _workflow(
        "bench-small",
        {
            "a": {"type": "noop"},
            "b": {"type": "noop", "needs": ["a"]},
            "c": {"type": "noop", "needs": ["b"]},
        },
    )
