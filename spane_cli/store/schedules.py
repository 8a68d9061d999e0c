"""Schedules in the database: registered, changed, and fired exactly once per fire time.

A fire is one transaction: the schedule row is locked (PostgreSQL: `FOR UPDATE SKIP
LOCKED`, so a worker that finds another one firing it moves on; SQLite: the write lock),
its due fire times are decided (`spane_cli.fires.plan_fires`), the executions that run are
created with their schedule and fire time (a unique key), every decision is written to
`schedule_fire`, and the row's next fire time moves on with a guarded UPDATE. A worker
killed anywhere inside leaves all of it or none of it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import peewee

from spane_cli.errors import NotFound, OperationFailed, SpaneError, UsageError
from spane_cli.fires import (
    MAX_FIRE_TIMES,
    Decision,
    FirePlan,
    fire_times,
    next_fire_time,
    plan_fires,
)
from spane_cli.states import OPEN_EXECUTION
from spane_cli.store import sql
from spane_cli.store.create import insert_execution
from spane_cli.store.models import Execution, Schedule, ScheduleBackfill, ScheduleFire
from spane_cli.store.records import Dispatch, StaleReport
from spane_cli.store.tx import Caches, Tx, transaction
from spane_cli.store.versions import latest_version_id
from spane_cli.store.workers import worker_spans
from spane_cli.timeutil import iso
from spane_cli.workflow.expression_error import ExpressionError
from spane_cli.workflow.model import Workflow
from spane_cli.workflow.schedule_spec import ScheduleSpec

# The input of one fire: (workflow, schedule, fire time) -> the execution's input. Raises a
# SpaneError or an ExpressionError when it cannot be made; the fire is then `failed`.
InputMaker = Callable[[Workflow, ScheduleSpec, float], Any]
KEEP_FIRES = 1000  # decisions kept per schedule (the newest)
MAX_BACKFILL_FIRES = 10_000
_OPEN = [str(s) for s in OPEN_EXECUTION]


@dataclass
class FireOutcome:
    """What one fire transaction did, or why it did nothing."""

    dispatches: list[Dispatch] = field(default_factory=list)
    plans: list[FirePlan] = field(default_factory=list)
    executions: list[str] = field(default_factory=list)
    # Under `overlap: replace`, executions to cancel before the fire can run (each in a
    # transaction of its own, so that a sub-workflow's rows are never taken parent first).
    cancel_first: list[str] = field(default_factory=list)


# -- registering -------------------------------------------------------------------------------


def save_schedule(
    caches: Caches,
    spec: ScheduleSpec,
    *,
    workflow: str,
    version_id: int | None,
    origin: str,
    source_file: str | None,
    now: float,
    replace: bool,
) -> bool:
    """Create the schedule, or (with `replace`) update it; True when it is new. Its next fire
    is the first fire time after `now`: fires of the past are never run by adding it."""
    with transaction(caches, now) as tx:
        existing = _lock(tx, spec.name, skip_locked=False)
        if existing is not None and not replace:
            raise OperationFailed(
                f"schedule {spec.name!r} exists: `spane schedule rm {spec.name}` first"
            )
        values = {
            "workflow": workflow,
            "version_id": version_id,
            "origin": origin,
            "source_file": source_file,
            "spec": spec.to_data(),
            "updated_at": now,
        }
        if existing is None:
            Schedule.insert(
                name=spec.name,
                next_fire_at=next_fire_time(spec, now),
                created_at=now,
                **values,
            ).execute()
            return True
        if existing.spec != spec.to_data():
            values["next_fire_at"] = next_fire_time(spec, now)  # the old times mean nothing now
        Schedule.update(**values).where(Schedule.name == spec.name).execute()
        return False


def remove_schedule(caches: Caches, name: str, now: float) -> None:
    """The schedule, its decisions and its backfills; its executions stay."""
    with transaction(caches, now) as tx:
        if _lock(tx, name, skip_locked=False) is None:
            raise NotFound(f"no schedule {name!r}")
        ScheduleFire.delete().where(ScheduleFire.schedule == name).execute()
        ScheduleBackfill.delete().where(ScheduleBackfill.schedule == name).execute()
        Schedule.delete().where(Schedule.name == name).execute()


def set_schedule_paused(caches: Caches, name: str, paused: bool, now: float) -> bool:
    """False when it already was. Resuming starts from the next fire time after `now`: the
    fires that passed while it was paused are not run."""
    with transaction(caches, now) as tx:
        row = _lock(tx, name, skip_locked=False)
        if row is None:
            raise NotFound(f"no schedule {name!r}")
        if bool(row.paused) == paused:
            return False
        values: dict[str, Any] = {"paused": paused, "updated_at": now}
        if not paused:
            values["next_fire_at"] = next_fire_time(spec_of(row), now)
        Schedule.update(**values).where(
            (Schedule.name == name) & (Schedule.paused == (not paused))
        ).execute()
        return True


def spec_of(row: Schedule) -> ScheduleSpec:
    return ScheduleSpec.from_data(str(row.name), row.spec)


# -- firing ------------------------------------------------------------------------------------


def due_work(database: peewee.Database, now: float) -> list[tuple[str, int | None]]:
    """(schedule, backfill id or None) with something to do: one query, the only one a tick
    makes when nothing is due."""
    rows = sql.run(
        database,
        "SELECT name, NULL FROM schedule WHERE next_fire_at <= ? AND paused = ?"
        " UNION ALL SELECT schedule, id FROM schedule_backfill WHERE finished_at IS NULL",
        (now, False),
    ).fetchall()
    return [(str(name), None if backfill is None else int(backfill)) for name, backfill in rows]


def fire_schedule(
    caches: Caches,
    name: str,
    now: float,
    make_input: InputMaker,
    heartbeat_slack: float,
) -> FireOutcome:
    """Deal with every due fire time of schedule `name`, in one transaction. Nothing when
    another worker is firing it, or it is not due (any more). A worker counts as running
    until `heartbeat_slack` seconds after its last beat."""
    with transaction(caches, now) as tx:
        row = _lock(tx, name, skip_locked=True)
        if row is None or row.paused or row.next_fire_at is None or row.next_fire_at > now:
            return FireOutcome()
        spec = spec_of(row)
        due = fire_times(spec, float(row.next_fire_at) - 0.0005, now, MAX_FIRE_TIMES)
        if not due:  # the spec changed under an old next_fire_at
            _advance(tx, row, next_fire_time(spec, now))
            return FireOutcome()
        previous = _open_execution(row.last_execution_id)
        spans = worker_spans(heartbeat_slack, since=due[0])
        plans = plan_fires(spec, due, now, spans, previous)
        replaced = [p.replaces for p in plans if p.decision is Decision.RAN and p.replaces]
        if replaced:
            return FireOutcome(plans=plans, cancel_first=[r for r in replaced if r])
        outcome = FireOutcome(plans=plans)
        already = _executions_at(name, due[0], due[-1])
        last_execution = row.last_execution_id
        missed: list[FirePlan] = []
        for plan in plans:
            if plan.decision is Decision.MISSED:
                missed.append(plan)
                continue
            _record_missed(tx, name, missed)
            missed = []
            if plan.decision is not Decision.RAN:
                _record(tx, name, plan.fire_time, plan.decision, "schedule", None, plan.reason)
                continue
            if plan.fire_time in already:
                _record(
                    tx, name, plan.fire_time, Decision.ALREADY_RAN, "schedule",
                    already[plan.fire_time], "a backfill or manual run made it",
                )  # fmt: skip
                continue
            execution_id = _run_fire(tx, row, spec, plan.fire_time, make_input, "schedule")
            if execution_id is not None:
                outcome.executions.append(execution_id)
                last_execution = execution_id
        _record_missed(tx, name, missed)
        _advance(tx, row, next_fire_time(spec, due[-1]), last_execution)
        _prune(tx, name)
    outcome.dispatches = tx.dispatches
    return outcome


def fire_now(
    caches: Caches, name: str, now: float, make_input: InputMaker
) -> tuple[str, list[Dispatch]]:
    """`spane schedule run`: one execution at once, with `now` as its fire time. The overlap
    policy does not apply: an operator asked for it."""
    with transaction(caches, now) as tx:
        row = _lock(tx, name, skip_locked=False)
        if row is None:
            raise NotFound(f"no schedule {name!r}")
        moment = round(now, 3)
        while _executions_at(name, moment, moment):
            moment = round(moment + 0.001, 3)  # a fire time already taken (by a tick)
        execution_id = _run_fire(tx, row, spec_of(row), moment, make_input, "manual", strict=True)
        assert execution_id is not None  # strict: a failure raised
    return execution_id, tx.dispatches


def start_backfill(
    caches: Caches,
    name: str,
    from_time: float,
    to_time: float,
    max_parallel: int | None,
    now: float,
) -> tuple[int, int]:
    """(backfill id, fire times in the range); the workers' ticks run them."""
    if to_time < from_time:
        raise UsageError("--to is before --from")
    with transaction(caches, now) as tx:
        row = _lock(tx, name, skip_locked=False)
        if row is None:
            raise NotFound(f"no schedule {name!r}")
        spec = spec_of(row)
        count = len(fire_times(spec, from_time - 0.0005, to_time, MAX_BACKFILL_FIRES + 1))
        if count > MAX_BACKFILL_FIRES:
            raise UsageError(
                f"the range holds more than {MAX_BACKFILL_FIRES} fire times: backfill less at once"
            )
        backfill_id = ScheduleBackfill.insert(
            schedule=name,
            from_time=from_time,
            to_time=to_time,
            next_after=from_time - 0.0005,
            max_parallel=max_parallel or spec.max_parallel,
            running=[],
            created_at=now,
            finished_at=now if count == 0 else None,
        ).execute()
    return int(backfill_id), count


def advance_backfill(
    caches: Caches, backfill_id: int, now: float, make_input: InputMaker
) -> FireOutcome:
    """Start fire times of the backfill while fewer than `max_parallel` of its executions are
    open; finish it when every fire time has run and none is open."""
    with transaction(caches, now) as tx:
        backfill = ScheduleBackfill.get_or_none(ScheduleBackfill.id == backfill_id)
        if backfill is None or backfill.finished_at is not None:
            return FireOutcome()
        row = _lock(tx, str(backfill.schedule), skip_locked=True)
        if row is None:
            return FireOutcome()
        spec = spec_of(row)
        running = [e.id for e in _still_open(list(backfill.running))]
        outcome = FireOutcome()
        after = float(backfill.next_after)
        while len(running) < int(backfill.max_parallel):
            wanted = int(backfill.max_parallel) - len(running)
            times = fire_times(spec, after, float(backfill.to_time), wanted)
            if not times:
                break
            already = _executions_at(str(row.name), times[0], times[-1])
            for moment in times:
                if moment in already:
                    _record(
                        tx, str(row.name), moment, Decision.ALREADY_RAN, "backfill",
                        already[moment], "the schedule or a manual run made it",
                    )  # fmt: skip
                    continue
                execution_id = _run_fire(tx, row, spec, moment, make_input, "backfill")
                if execution_id is not None:
                    running.append(execution_id)
                    outcome.executions.append(execution_id)
            after = times[-1]
        done = not fire_times(spec, after, float(backfill.to_time), 1) and not running
        changed = (
            ScheduleBackfill.update(
                next_after=after, running=running, finished_at=now if done else None
            )
            .where(
                (ScheduleBackfill.id == backfill_id)
                & (ScheduleBackfill.next_after == backfill.next_after)
            )
            .execute()
        )
        if changed != 1:
            raise StaleReport()
        _prune(tx, str(row.name))
    outcome.dispatches = tx.dispatches
    return outcome


# -- inside a fire -----------------------------------------------------------------------------


def _lock(tx: Tx, name: str, *, skip_locked: bool) -> Schedule | None:
    """The schedule row, locked for this transaction; None when there is none, or when
    `skip_locked` and another transaction holds it."""
    query = Schedule.select().where(Schedule.name == name)
    if isinstance(tx.database, peewee.PostgresqlDatabase):
        query = query.for_update(skip_locked=skip_locked or None)
    return query.first()


def _open_execution(execution_id: str | None) -> str | None:
    if execution_id is None:
        return None
    found = _still_open([execution_id])
    return found[0].id if found else None


def _still_open(execution_ids: list[str]) -> list[Execution]:
    if not execution_ids:
        return []
    return list(
        Execution.select(Execution.id).where(
            Execution.id.in_(execution_ids) & Execution.status.in_(_OPEN)
        )
    )


def _executions_at(name: str, first: float, last: float) -> dict[float, str]:
    """Executions of the schedule with a fire time in [first, last], by fire time."""
    rows = Execution.select(Execution.id, Execution.fire_time).where(
        (Execution.schedule == name)
        & (Execution.fire_time >= first)
        & (Execution.fire_time <= last)
    )
    return {float(r.fire_time or 0): str(r.id) for r in rows}


def _run_fire(
    tx: Tx,
    row: Schedule,
    spec: ScheduleSpec,
    moment: float,
    make_input: InputMaker,
    origin: str,
    *,
    strict: bool = False,
) -> str | None:
    """The execution of one fire time and its `ran` decision; a `failed` decision (or, when
    `strict`, the error itself) when its workflow or input cannot be had."""
    name = str(row.name)
    version_id = row.version_id if row.version_id is not None else latest_version_id(row.workflow)
    try:
        if version_id is None:
            raise NotFound(f"no registered workflow named {row.workflow!r}")
        workflow_input = make_input(tx.version(int(version_id)).workflow, spec, moment)
    except (SpaneError, ExpressionError) as exc:
        if strict:
            raise
        message = exc.message if isinstance(exc, SpaneError) else str(exc)
        _record(tx, name, moment, Decision.FAILED, origin, None, message)
        return None
    execution_id = insert_execution(tx, int(version_id), workflow_input, schedule=(name, moment))
    _record(tx, name, moment, Decision.RAN, origin, execution_id, None)
    return execution_id


def _record(
    tx: Tx,
    name: str,
    moment: float,
    decision: Decision,
    origin: str,
    execution_id: str | None,
    reason: str | None,
    extra: dict[str, Any] | None = None,
) -> None:
    detail = {"reason": reason, **(extra or {})} if reason or extra else None
    ScheduleFire.insert(
        schedule=name,
        fire_time=moment,
        decision=str(decision),
        origin=origin,
        execution_id=execution_id,
        detail=detail,
        created_at=tx.now,
    ).execute()


def _record_missed(tx: Tx, name: str, missed: list[FirePlan]) -> None:
    """A run of missed fires is one decision, with how many and until when: an outage of a
    day under an every-second schedule is one row, not 86,400."""
    if not missed:
        return
    first, last = missed[0], missed[-1]
    extra = {"count": len(missed), "last": iso(last.fire_time)} if len(missed) > 1 else None
    _record(tx, name, first.fire_time, Decision.MISSED, "schedule", None, first.reason, extra)


def _advance(
    tx: Tx, row: Schedule, next_fire_at: float | None, last_execution: str | None = None
) -> None:
    """The guarded step of the schedule: only from the next fire time this transaction read."""
    changed = (
        Schedule.update(
            next_fire_at=next_fire_at,
            last_execution_id=last_execution or row.last_execution_id,
        )
        .where((Schedule.name == row.name) & (Schedule.next_fire_at == row.next_fire_at))
        .execute()
    )
    if changed != 1:
        raise StaleReport()  # rolls the fire back: someone else moved the schedule


def _prune(tx: Tx, name: str) -> None:
    tx.run(
        "DELETE FROM schedule_fire WHERE schedule = ? AND id <= (SELECT id FROM schedule_fire"
        " WHERE schedule = ? ORDER BY id DESC LIMIT 1 OFFSET ?)",
        (name, name, KEEP_FIRES),
    )
