"""Circuit breakers of http hosts, one row per host, shared by every worker.

closed: nodes run; each counted failure is kept, and `failures` of them within `window` open
it. open: until `open_until` no node runs (they fail at once or wait, as their workflow
says). Then one run, the probe, is let through (half_open): its success closes the breaker,
its failure opens it again. The probe is named by its node attempt, so a probe whose worker
died is replaced once its node is no longer running.

The decision to let a start through is read before the claim (`admit`); the outcome is
recorded with the node's end, in its transaction (`record`), with the events of opening and
closing on the execution whose node caused them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import peewee

from spane_cli.states import OutcomeKind
from spane_cli.store import events, sql
from spane_cli.store.records import Report
from spane_cli.store.tx import Caches, Tx, transaction
from spane_cli.workflow.limits import BreakerSpec

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
# A probe chosen but not yet running (its claim follows within moments) is kept this long.
PROBE_CLAIM_SECONDS = 5.0


@dataclass(frozen=True)
class Admission:
    """A start the breaker does not let through now."""

    until: float | None  # open until then; None: half open, its probe still running


def probe_name(execution_id: str, node_id: str, attempt: int, item: int | None) -> str:
    return f"{execution_id}/{node_id}/{attempt}/{-1 if item is None else item}"


def counts_as_failure(report: Report) -> bool:
    """A connection error, a timeout, a 5xx or a 429 counts; any other answer shows the host
    is up. A run the breaker itself refused never reached the host."""
    if report.kind != OutcomeKind.FAILED:
        return False
    return report.http_status is None or report.http_status >= 500 or report.http_status == 429


def _state(database: peewee.Database, host: str) -> tuple[Any, ...] | None:
    row = sql.run(
        database,
        "SELECT state, open_until, probe, probe_at, failures FROM circuit_breaker WHERE host = ?",
        (host,),
    ).fetchone()
    return tuple(row) if row is not None else None


def _locked(tx: Tx, host: str) -> tuple[Any, ...] | None:
    postgres = isinstance(tx.database, peewee.PostgresqlDatabase)
    row = tx.run(
        "SELECT state, open_until, probe, probe_at, failures FROM circuit_breaker WHERE host = ?"
        + (" FOR UPDATE" if postgres else ""),
        (host,),
    ).fetchone()
    return tuple(row) if row is not None else None


def admit(caches: Caches, spec: BreakerSpec, probe: str, now: float) -> Admission | None:
    """None: the start may go ahead (as the probe, when the breaker was due for one)."""
    row = _state(caches.database, spec.host)  # a plain read: a closed breaker costs no write
    if row is None or row[0] == CLOSED:
        return None
    if row[0] == OPEN and now < row[1]:
        return Admission(row[1])
    with transaction(caches, now) as tx:
        row = _locked(tx, spec.host)
        if row is None or row[0] == CLOSED:
            return None
        state, open_until, holder, probe_at, _ = row
        if state == OPEN and now < open_until:
            return Admission(open_until)
        if state == HALF_OPEN and holder != probe and _probe_alive(tx, holder, probe_at):
            return Admission(None)
        tx.run(
            "UPDATE circuit_breaker SET state = ?, probe = ?, probe_at = ?, updated_at = ?"
            " WHERE host = ?",
            (HALF_OPEN, probe, now, now, spec.host),
        )
        return None


def _probe_alive(tx: Tx, holder: str | None, probe_at: float | None) -> bool:
    if holder is None:
        return False
    if probe_at is not None and tx.now - probe_at < PROBE_CLAIM_SECONDS:
        return True
    execution_id, rest = holder.split("/", 1)
    node_id, attempt, item = rest.rsplit("/", 2)
    if int(item) < 0:
        row = tx.run(
            "SELECT 1 FROM node_run WHERE execution_id = ? AND node_id = ? AND attempt = ?"
            " AND status = 'running'",
            (execution_id, node_id, int(attempt)),
        ).fetchone()
    else:
        row = tx.run(
            "SELECT 1 FROM node_item WHERE execution_id = ? AND node_id = ? AND item_index = ?"
            " AND attempt = ? AND status = 'running'",
            (execution_id, node_id, int(item), int(attempt)),
        ).fetchone()
    return row is not None


def record(
    tx: Tx,
    spec: BreakerSpec,
    execution_id: str,
    node_id: str,
    probe: str,
    report: Report,
) -> None:
    """A gated http run ended: count it; open or close the breaker when it says so."""
    failed = counts_as_failure(report)
    row = _state(tx.database, spec.host)
    if not failed and (row is None or row[0] == CLOSED):
        return  # the common case: a success while closed changes nothing
    if row is None:
        tx.run(
            "INSERT INTO circuit_breaker (host, state, failures, updated_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (host) DO NOTHING",
            (spec.host, CLOSED, "[]", tx.now),
        )
    row = _locked(tx, spec.host)
    assert row is not None
    state, _, holder, _, failures = row
    if state == HALF_OPEN and holder == probe:
        if failed:
            _open(tx, spec, execution_id, node_id, [], "its probe failed")
        else:
            tx.run(
                "UPDATE circuit_breaker SET state = ?, failures = '[]', probe = NULL,"
                " probe_at = NULL, opened_at = NULL, open_until = NULL, updated_at = ?"
                " WHERE host = ?",
                (CLOSED, tx.now, spec.host),
            )
            tx.event(execution_id, node_id, events.BREAKER_CLOSED, {"host": spec.host})
        return
    if state != CLOSED or not failed:
        return  # a run that started before it opened ended: the probe decides
    times = json.loads(failures) if isinstance(failures, str) else list(failures or [])
    recent = [t for t in times if t > tx.now - spec.window] + [tx.now]
    recent = recent[-spec.failures :]
    if len(recent) >= spec.failures:
        reason = f"{len(recent)} failures within {spec.window:g}s"
        _open(tx, spec, execution_id, node_id, recent, reason)
        return
    tx.run(
        "UPDATE circuit_breaker SET failures = ?, updated_at = ? WHERE host = ?",
        (json.dumps(recent), tx.now, spec.host),
    )


def _open(
    tx: Tx, spec: BreakerSpec, execution_id: str, node_id: str, failures: list[float], why: str
) -> None:
    until = tx.now + spec.open_for
    tx.run(
        "UPDATE circuit_breaker SET state = ?, failures = ?, opened_at = ?, open_until = ?,"
        " probe = NULL, probe_at = NULL, updated_at = ? WHERE host = ?",
        (OPEN, json.dumps(failures), tx.now, until, tx.now, spec.host),
    )
    data = {"host": spec.host, "reason": why, "until": until}
    tx.event(execution_id, node_id, events.BREAKER_OPENED, data)


@dataclass(frozen=True)
class BreakerView:
    host: str
    state: str
    failures: int
    opened_at: float | None
    open_until: float | None
    probe: str | None
    updated_at: float

    def as_json(self) -> dict[str, Any]:
        from spane_cli.timeutil import iso

        return {
            "host": self.host,
            "state": self.state,
            "recent_failures": self.failures,
            "opened_at": iso(self.opened_at),
            "open_until": iso(self.open_until),
            "probe": self.probe,
            "updated_at": iso(self.updated_at),
        }


def list_breakers(database: peewee.Database, only_open: bool = False) -> list[BreakerView]:
    """Every breaker that has counted something (`spane breaker list`, `spane health`)."""
    where = " WHERE state <> 'closed'" if only_open else ""
    rows = sql.run(
        database,
        "SELECT host, state, failures, opened_at, open_until, probe, updated_at"
        f" FROM circuit_breaker{where} ORDER BY host",
    ).fetchall()
    views = []
    for host, state, failures, opened_at, open_until, probe, updated_at in rows:
        times = json.loads(failures) if isinstance(failures, str) else list(failures or [])
        views.append(BreakerView(host, state, len(times), opened_at, open_until, probe,
                                 updated_at))  # fmt: skip
    return views


def reset(caches: Caches, host: str | None, now: float) -> int:
    """`spane breaker reset`: closed again, its failures forgotten; how many were reset."""
    with transaction(caches, now) as tx:
        where, params = ("WHERE host = ?", (host,)) if host is not None else ("", ())
        return int(tx.run(f"DELETE FROM circuit_breaker {where}", params).rowcount)
