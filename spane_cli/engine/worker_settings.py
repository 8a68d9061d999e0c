"""What a worker is and the periods it runs on: its identity per process life, and the
timings (heartbeat, TTL, reconcile tick, cancel checks) that tests may shorten."""

from __future__ import annotations

import math
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, fields

from spane_cli.errors import UsageError
from spane_cli.store.workers import HEARTBEAT_EVERY_SECONDS, HEARTBEAT_TTL_SECONDS

RECONCILE_EVERY_SECONDS = 1.0
# How often a running node looks at its execution's status, to stop when it was cancelled.
CANCEL_CHECK_EVERY_SECONDS = 1.0
STOP_GRACE_SECONDS = 60.0


@dataclass(frozen=True)
class WorkerTimings:
    """The periods a worker runs on, in seconds; the defaults are production's.

    The environment may shorten them (SPANE_HEARTBEAT_EVERY, SPANE_HEARTBEAT_TTL,
    SPANE_RECONCILE_EVERY, SPANE_CANCEL_CHECK_EVERY), so that a test sees a killed worker
    recovered in seconds. They are not advertised: every worker of a cluster must agree on
    the TTL, since each reconciler judges the others' heartbeats by its own."""

    heartbeat_every: float = HEARTBEAT_EVERY_SECONDS
    # A worker whose heartbeat is older than this counts as gone; its nodes run again.
    heartbeat_ttl: float = HEARTBEAT_TTL_SECONDS
    # An idle worker ticks at most once per poll (WorkerOptions.poll_seconds): BLPOP takes
    # whole seconds on Redis before 6.
    reconcile_every: float = RECONCILE_EVERY_SECONDS
    cancel_check_every: float = CANCEL_CHECK_EVERY_SECONDS
    # After a SIGTERM the running node has this long to finish; then its commands are killed,
    # the worker exits, and the node runs again elsewhere (SPANE_STOP_GRACE, in --help).
    stop_grace: float = STOP_GRACE_SECONDS

    def __post_init__(self) -> None:
        for spec in fields(self):
            value = getattr(self, spec.name)
            if not (math.isfinite(value) and value > 0):
                raise UsageError(
                    f"{_variable(spec.name)} must be a finite number of seconds > 0, not {value}"
                )
        if self.heartbeat_every >= self.heartbeat_ttl:
            raise UsageError(
                f"{_variable('heartbeat_every')} ({self.heartbeat_every:g}) must be less than "
                f"{_variable('heartbeat_ttl')} ({self.heartbeat_ttl:g}): live workers would "
                "look dead between their beats"
            )

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> WorkerTimings:
        environ = os.environ if environ is None else environ
        given: dict[str, float] = {}
        for spec in fields(cls):
            variable = _variable(spec.name)
            text = environ.get(variable, "").strip()
            if not text:
                continue
            try:
                given[spec.name] = float(text)
            except ValueError:
                raise UsageError(f"{variable} must be a number of seconds, not {text!r}") from None
        return cls(**given)


def _variable(timing: str) -> str:
    return f"SPANE_{timing.upper()}"


# Set by a supervisor for each child it starts, so that it knows the child's identity.
LIFE_ENV = "SPANE_WORKER_LIFE"


def worker_identity(name: str, life: str | None = None) -> str:
    """`name~life`: one process life of the worker called `name`. A worker restarted under
    the same name (by a supervisor, by systemd) is a new worker: the nodes of the life that
    died are recovered instead of looking held by the fresh heartbeat of its successor."""
    return f"{name}~{life or secrets.token_hex(4)}"


RETENTION_ENV = "SPANE_RETENTION"


def retention_from_environment(environ: Mapping[str, str] | None = None) -> float | None:
    """SPANE_RETENTION (a duration such as 30d): workers delete finished executions older than
    that, a batch per reconcile tick. Unset: nothing is deleted."""
    from spane_cli.workflow.durations import DurationError, parse_duration

    text = (os.environ if environ is None else environ).get(RETENTION_ENV, "").strip()
    if not text:
        return None
    try:
        return parse_duration(text)
    except DurationError as exc:
        raise UsageError(f"{RETENTION_ENV}: {exc}") from None


PRIORITY_AGING_ENV = "SPANE_PRIORITY_AGING"


def priority_aging_from_environment(environ: Mapping[str, str] | None = None) -> float:
    """SPANE_PRIORITY_AGING (a duration such as 1m, 30s): how much waiting one unit of
    priority is worth when a worker chooses the next job of a queue (docs/priorities.md).
    Every worker of a cluster should have the same."""
    from spane_cli.engine.dispatch import PRIORITY_AGING_SECONDS
    from spane_cli.workflow.durations import DurationError, parse_duration

    text = (os.environ if environ is None else environ).get(PRIORITY_AGING_ENV, "").strip()
    if not text:
        return PRIORITY_AGING_SECONDS
    try:
        aging = parse_duration(text)
    except DurationError as exc:
        raise UsageError(f"{PRIORITY_AGING_ENV}: {exc}") from None
    if not (math.isfinite(aging) and aging > 0):
        raise UsageError(f"{PRIORITY_AGING_ENV} must be a duration > 0, not {text!r}")
    return aging


def pulse_window(timings: WorkerTimings) -> float:
    """How long a worker may go without a pulse before its keeper kills it: ends before its
    heartbeat TTL does, so the node it holds is never re-run elsewhere while it still runs
    here; with room for a slow moment beyond one heartbeat period."""
    return max(timings.heartbeat_ttl - timings.heartbeat_every / 2, timings.heartbeat_every * 1.5)
