"""Execution and node statuses (SPEC §2), which of them are final, and the kinds of outcome a
node run reports. Everything else in spane imports these; this module imports nothing of it."""

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


class OutcomeKind(StrEnum):
    """What one run of a node ended with, as the node type (or the engine around it) says."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    WAIT = "wait"  # delay: park the node until `wait_until` (epoch seconds); holds no worker
    CHILD = "child"  # workflow: start the child execution the result describes
    FANOUT = "fanout"  # foreach: the node's items, each run as its own job
    SKIPPED = "skipped"  # `when:` was false


TERMINAL_EXECUTION = frozenset(
    {ExecutionStatus.SUCCEEDED, ExecutionStatus.FAILED, ExecutionStatus.CANCELLED}
)
# An execution whose nodes may still be claimed.
ACTIVE_EXECUTION = (ExecutionStatus.PENDING, ExecutionStatus.RUNNING)
# An execution that has not ended (a paused one has not).
OPEN_EXECUTION = (ExecutionStatus.PENDING, ExecutionStatus.RUNNING, ExecutionStatus.PAUSED)
TERMINAL_NODE = frozenset(
    {
        NodeStatus.SUCCEEDED,
        NodeStatus.FAILED,
        NodeStatus.SKIPPED,
        NodeStatus.CANCELLED,
        NodeStatus.UPSTREAM_FAILED,
    }
)
