"""Schedules from the operator's side: declared in a workflow file (`spane schedule apply`)
or on the command line (`spane schedule add`), fired by hand, backfilled; and the input of
each fire. Workers fire them on their own (reconcile.fire_schedules).

What a schedule runs: given a FILE, the file (and its sub-workflows) is registered as a
workflow version when the schedule is saved, and every fire runs that snapshot; editing
the file changes nothing until `apply` (or `add --replace`) is run again, exactly like
`spane run` runs the file as it was when submitted. Given the NAME of a registered
workflow instead, each fire runs the newest registered version of that name at fire time.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Mapping
from typing import Any

from spane_cli.errors import NotFound, UsageError
from spane_cli.fires import next_fire_time, schedule_scope
from spane_cli.store.records import Dispatch
from spane_cli.store.store import Store
from spane_cli.store.versions import latest_version_id
from spane_cli.workflow.expressions import ExpressionError, render_value
from spane_cli.workflow.model import Workflow, thaw
from spane_cli.workflow.schedule_spec import (
    ScheduleSpec,
    cron_problem,
    every_problem,
    timezone_problem,
)

from . import submit


def schedule_input(workflow: Workflow, spec: ScheduleSpec, fire_time: float) -> Any:
    """The schedule's `input:` rendered for one fire time, then checked like `spane run -i`:
    defaults applied, required inputs present, each input's schema."""
    scope = {"schedule": schedule_scope((spec.name, fire_time), spec.timezone)}
    given = render_value(thaw(spec.input), scope)
    if not isinstance(given, Mapping):
        raise UsageError(f"schedule {spec.name!r}: its input must be a mapping")
    return submit.resolve_inputs(workflow, given)


def check_spec(spec: ScheduleSpec) -> None:
    """A schedule given on the command line, checked as a file's would be."""
    if (spec.cron is None) == (spec.every is None):
        raise UsageError("give exactly one of --cron and --every")
    problems = [
        spec.cron is not None and cron_problem(spec.cron),
        spec.every is not None and every_problem(spec.every),
        timezone_problem(spec.timezone),
    ]
    for problem in problems:
        if problem:
            raise UsageError(problem)


def _target(store: Store, target: str) -> tuple[str, int | None, Workflow, str | None]:
    """(workflow name, version id or None for "the newest", model, file) of FILE or NAME."""
    if os.path.exists(target):
        validated = submit.validated_file(target)
        assert validated.workflow is not None  # validated_file raised otherwise
        version_id = submit.register_file(store, validated.file, validated.documents)
        return validated.workflow.name, version_id, validated.workflow, os.path.abspath(target)
    latest = latest_version_id(target)
    if latest is None:
        raise NotFound(f"{target!r} is neither a file nor a registered workflow")
    workflow = store.versions.get(latest).workflow
    return workflow.name, None, workflow, None


def _save(
    store: Store,
    spec: ScheduleSpec,
    target: tuple[str, int | None, Workflow, str | None],
    origin: str,
    replace: bool,
    now: float,
) -> bool:
    name, version_id, workflow, file = target
    first = next_fire_time(spec, now)
    if first is not None:
        try:
            schedule_input(workflow, spec, first)  # a bad input fails now, not at 3 a.m.
        except ExpressionError as exc:
            raise UsageError(f"schedule {spec.name!r}: {exc}") from None
    return store.save_schedule(
        spec,
        workflow=name,
        version_id=version_id,
        origin=origin,
        source_file=file,
        replace=replace,
        now=now,
    )


def add_schedule(store: Store, spec: ScheduleSpec, target: str, *, replace: bool = False) -> bool:
    """`spane schedule add NAME FILE|WORKFLOW --cron ...|--every ...`; True when new. With
    neither --cron nor --every, the schedule the file declares is taken (the one called
    NAME, or its only one), under NAME."""
    declared = spec.cron is None and spec.every is None
    if not declared:
        check_spec(spec)  # before anything is registered
    found = _target(store, target)
    if declared:
        spec = _declared(found[2], spec.name)
    return _save(store, spec, found, "file" if declared else "cli", replace, time.time())


def _declared(workflow: Workflow, name: str) -> ScheduleSpec:
    named = [s for s in workflow.schedules if s.name == name]
    if not named and len(workflow.schedules) == 1:
        named = list(workflow.schedules)
    if not named:
        raise UsageError(
            f"give --cron or --every: workflow {workflow.name!r} declares no schedule {name!r}"
        )
    return dataclasses.replace(named[0], name=name)


def apply_file(store: Store, file: str) -> list[tuple[str, bool]]:
    """Every `schedule:` of the file saved (created or updated), with the file registered as
    their version: (schedule name, created?)."""
    if not os.path.exists(file):
        raise NotFound(f"no file {file!r}")
    target = _target(store, file)
    workflow = target[2]
    if not workflow.schedules:
        raise UsageError(f"{file}: the workflow declares no `schedule:`")
    now = time.time()
    return [
        (spec.name, _save(store, spec, target, "file", True, now)) for spec in workflow.schedules
    ]


def fire_now(store: Store, name: str) -> tuple[str, list[Dispatch]]:
    """`spane schedule run NAME`: one execution now (its fire time is now)."""
    try:
        return store.fire_schedule_now(name, schedule_input)
    except ExpressionError as exc:
        raise UsageError(f"schedule {name!r}: {exc}") from None
