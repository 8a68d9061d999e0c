"""Execution and node statuses (SPEC §2) and which of them are final."""

from __future__ import annotations

from enum import StrEnum


class ExecutionStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    PAUSED = "paused"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class NodeStatus(StrEnum):
    PENDING = "pending"  # waiting for parents
    QUEUED = "queued"  # a job is (or should be) on a queue for the current attempt
    RUNNING = "running"  # a worker claimed the current attempt
    WAITING = "waiting"  # a delay or a sub-workflow; holds no worker
    RETRYING = "retrying"  # failed an attempt; the next one is due at `due_at`
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"
    UPSTREAM_FAILED = "upstream_failed"


TERMINAL_EXECUTION = frozenset(
    {ExecutionStatus.SUCCEEDED, ExecutionStatus.FAILED, ExecutionStatus.CANCELLED}
)
TERMINAL_NODE = frozenset(
    {
        NodeStatus.SUCCEEDED,
        NodeStatus.FAILED,
        NodeStatus.SKIPPED,
        NodeStatus.CANCELLED,
        NodeStatus.UPSTREAM_FAILED,
    }
)
ACTIVE_NODE = frozenset(
    {NodeStatus.QUEUED, NodeStatus.RUNNING, NodeStatus.WAITING, NodeStatus.RETRYING}
)


def is_terminal_node(status: str) -> bool:
    return status in TERMINAL_NODE


def is_terminal_execution(status: str) -> bool:
    return status in TERMINAL_EXECUTION
