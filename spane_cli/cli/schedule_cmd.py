"""`spane schedule ...`: workflows that run by themselves, fired by the workers."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from spane_cli.cli.services import store_and_dispatcher, store_only

# fires.MAX_FIRE_TIMES, written out: importing fires (and croniter) would slow every command.
_MAX_NEXT = 10_000

schedule_app = typer.Typer(
    help="Schedules: cron or interval triggers that the workers fire themselves, exactly once "
    "per fire time. Declare them in the workflow file (`schedule:`, then `spane schedule "
    "apply FILE`) or with `spane schedule add`.",
    no_args_is_help=True,
)

NameArgument = Annotated[str, typer.Argument(help="The schedule's name.", metavar="NAME")]


def _show(view: dict[str, Any], keys: tuple[str, ...]) -> None:
    import json

    for key in keys:
        value = view.get(key)
        if value is None or value == {}:
            continue
        text = json.dumps(value) if isinstance(value, dict | list | bool) else str(value)
        sys.stdout.write(f"{key}: {text}\n")


@schedule_app.command("add")
def add(
    ctx: typer.Context,
    name: NameArgument,
    target: Annotated[
        str,
        typer.Argument(
            help="A workflow file (registered now; fires run that snapshot) or the name of a "
            "registered workflow (fires run its newest version).",
            metavar="FILE|WORKFLOW",
        ),
    ],
    cron: Annotated[
        str | None,
        typer.Option("--cron", help="Five cron fields, or six with seconds last.", metavar="EXPR"),
    ] = None,
    every: Annotated[
        str | None,
        typer.Option("--every", help="A fixed interval, e.g. 30s or 1h.", metavar="DUR"),
    ] = None,
    timezone: Annotated[
        str, typer.Option("--tz", help="IANA time zone of the cron fields.", metavar="ZONE")
    ] = "UTC",
    inputs: Annotated[
        list[str] | None,
        typer.Option(
            "-i",
            "--input",
            help="Input K=V of every fire; V may use {{ schedule.date }} and friends.",
            metavar="K=V",
        ),
    ] = None,
    overlap: Annotated[
        str, typer.Option("--overlap", help="allow, forbid or replace.", metavar="POLICY")
    ] = "allow",
    misfire: Annotated[
        str, typer.Option("--misfire", help="skip, once or all.", metavar="POLICY")
    ] = "once",
    starting_deadline: Annotated[
        str | None,
        typer.Option(
            "--starting-deadline", help="A fire not started within this is missed.", metavar="DUR"
        ),
    ] = None,
    max_parallel: Annotated[
        int, typer.Option("--max-parallel", help="Backfill executions open at a time.", min=1)
    ] = 1,
    replace: Annotated[
        bool, typer.Option("--replace", help="Update the schedule if it exists.")
    ] = False,
) -> None:
    """Add a schedule. Its first fire is the first fire time from now on. Without --cron and
    --every, the schedule FILE declares is taken (the one called NAME, or its only one)."""
    import re

    from spane_cli.engine.scheduling import add_schedule
    from spane_cli.errors import UsageError
    from spane_cli.workflow.schedule_spec import SCHEDULE_NAME_PATTERN, ScheduleSpec

    if not re.match(SCHEDULE_NAME_PATTERN, name):
        raise UsageError(f"schedule name {name!r} must match {SCHEDULE_NAME_PATTERN}")
    data = {
        "cron": cron,
        "every": every,
        "timezone": timezone,
        "input": _schedule_inputs(inputs or []),
        "overlap": overlap,
        "misfire": misfire,
        "starting_deadline": starting_deadline,
        "max_parallel": max_parallel,
    }
    try:
        spec = ScheduleSpec.from_data(name, data)
    except ValueError as exc:  # a bad policy or duration (DurationError is a ValueError)
        raise UsageError(str(exc)) from None
    current, store = store_only(ctx)
    created = add_schedule(store, spec, target, replace=replace)
    if not current.quiet:
        sys.stdout.write(f"schedule {name} {'added' if created else 'updated'}\n")


@schedule_app.command("apply")
def apply(
    ctx: typer.Context,
    file: Annotated[str, typer.Argument(help="A workflow file with `schedule:`.", metavar="FILE")],
) -> None:
    """Create or update every schedule the file declares; the file is registered as the
    version they run."""
    from spane_cli.cli.render import print_data
    from spane_cli.engine.scheduling import apply_file

    current, store = store_only(ctx)
    saved = apply_file(store, file)
    data = [{"name": name, "created": created} for name, created in saved]
    if print_data(data, current.output) or current.quiet:
        return
    for name, created in saved:
        sys.stdout.write(f"schedule {name} {'added' if created else 'updated'}\n")


@schedule_app.command("list")
def list_schedules(ctx: typer.Context) -> None:
    """Every schedule. -o json prints a bare array."""
    from rich.table import Table

    from spane_cli.cli.render import print_data
    from spane_cli.cli.tables import console
    from spane_cli.store.schedule_views import all_schedules, schedule_view

    current, _ = store_only(ctx)
    views = [schedule_view(row) for row in all_schedules()]
    if print_data(views, current.output):
        return
    if not views:
        sys.stderr.write("no schedules\n")
        return
    table = Table(show_edge=False)
    for column in ("name", "workflow", "when", "zone", "overlap", "misfire", "next fire"):
        table.add_column(column)
    for view in views:
        when = view["cron"] or f"every {view['every']:g}s"
        table.add_row(
            view["name"],
            view["workflow"],
            when,
            view["timezone"],
            view["overlap"],
            view["misfire"],
            "paused"
            if view["paused"]
            else f"{view['next_fire_time']}{' (late)' if view['late'] else ''}",
        )
    console().print(table)


@schedule_app.command("get")
def get(
    ctx: typer.Context,
    name: NameArgument,
    fires: Annotated[int, typer.Option("--fires", help="How many last fires to show.", min=1)] = 20,
) -> None:
    """One schedule and its last fires: ran, skipped-overlap, missed, failed, already-ran."""
    from rich.table import Table

    from spane_cli.cli.render import print_data
    from spane_cli.cli.tables import console
    from spane_cli.store.schedule_views import require_schedule, schedule_view

    current, _ = store_only(ctx)
    view = schedule_view(require_schedule(name), with_fires=fires)
    if print_data(view, current.output):
        return
    _show(view, tuple(k for k in view if k not in ("fires", "backfills")))
    for backfill in view["backfills"]:
        state = f"finished {backfill['finished_at']}" if backfill["finished_at"] else "running"
        sys.stdout.write(f"backfill {backfill['id']}: {backfill['from']} .. {backfill['to']} "
                         f"({state})\n")  # fmt: skip
    if not view["fires"]:
        sys.stdout.write("no fires yet\n")
        return
    table = Table(show_edge=False)
    for column in ("fire time", "decision", "origin", "execution", "status", "reason"):
        table.add_column(column)
    for fire in view["fires"]:
        moment = fire["fire_time"]
        if fire["count"] > 1:
            moment = f"{moment} .. {fire['last_fire_time']} ({fire['count']})"
        table.add_row(
            moment,
            fire["decision"],
            fire["origin"],
            fire["execution_id"] or "",
            fire["execution_status"] or "",
            fire["reason"] or "",
        )
    console().print(table)


@schedule_app.command("next")
def next_fires(
    ctx: typer.Context,
    name: NameArgument,
    count: Annotated[
        int, typer.Option("-n", "--count", help="How many.", min=1, max=_MAX_NEXT)
    ] = 5,
    after: Annotated[
        str | None,
        typer.Option("--after", help="From this ISO 8601 time (default: now).", metavar="T"),
    ] = None,
) -> None:
    """The next fire times, in the schedule's zone and in UTC."""
    import datetime as dt
    import time
    import zoneinfo

    from spane_cli.cli.render import print_data
    from spane_cli.fires import next_fire_times
    from spane_cli.store.schedule_views import require_schedule
    from spane_cli.store.schedules import spec_of
    from spane_cli.timeutil import iso

    current, _ = store_only(ctx)
    spec = spec_of(require_schedule(name))
    start = _time_option("--after", after) if after else time.time()
    zone = zoneinfo.ZoneInfo(spec.timezone)
    data = [
        {
            "fire_time": iso(moment),
            "local_time": dt.datetime.fromtimestamp(moment, zone).isoformat(timespec="seconds"),
            "timezone": spec.timezone,
        }
        for moment in next_fire_times(spec, start, count)
    ]
    if print_data(data, current.output):
        return
    for row in data:
        sys.stdout.write(f"{row['local_time']}  {row['fire_time']}\n")


def _time_option(option: str, text: str) -> float:
    from spane_cli.errors import UsageError
    from spane_cli.timeutil import parse_iso

    try:
        return parse_iso(text)
    except ValueError:
        raise UsageError(f"{option} {text!r}: use ISO 8601, e.g. 2026-11-25T08:00:00Z") from None


@schedule_app.command("pause")
def pause(ctx: typer.Context, name: NameArgument) -> None:
    """Stop firing; fire times that pass while paused are not run later."""
    current, store = store_only(ctx)
    changed = store.set_schedule_paused(name, True)
    if not current.quiet:
        sys.stdout.write(f"schedule {name} {'paused' if changed else 'was already paused'}\n")


@schedule_app.command("resume")
def resume(ctx: typer.Context, name: NameArgument) -> None:
    """Fire again, from the next fire time on."""
    current, store = store_only(ctx)
    changed = store.set_schedule_paused(name, False)
    if not current.quiet:
        sys.stdout.write(f"schedule {name} {'resumed' if changed else 'was not paused'}\n")


@schedule_app.command("rm")
def remove(ctx: typer.Context, name: NameArgument) -> None:
    """Remove the schedule and its fire history; its executions stay."""
    current, store = store_only(ctx)
    store.remove_schedule(name)
    if not current.quiet:
        sys.stdout.write(f"schedule {name} removed\n")


@schedule_app.command("run")
def run_now(ctx: typer.Context, name: NameArgument) -> None:
    """Fire now, whatever the overlap policy; prints the execution id."""
    from spane_cli.engine.scheduling import fire_now

    _, store, dispatcher = store_and_dispatcher(ctx)
    execution_id, dispatches = fire_now(store, name)
    dispatcher.enqueue(dispatches)
    sys.stdout.write(f"{execution_id}\n")


@schedule_app.command("backfill")
def backfill(
    ctx: typer.Context,
    name: NameArgument,
    from_time: Annotated[
        str, typer.Option("--from", help="First time, ISO 8601 (UTC unless an offset).")
    ],
    to_time: Annotated[str, typer.Option("--to", help="Last time, ISO 8601 (inclusive).")],
    max_parallel: Annotated[
        int | None,
        typer.Option("--max-parallel", help="Open at a time (default: the schedule's).", min=1),
    ] = None,
) -> None:
    """Run every fire time in [--from, --to], oldest first, max_parallel at a time. The
    workers run it; fire times that already have an execution are not run again."""
    from spane_cli.cli.render import print_data

    current, store = store_only(ctx)
    start, end = _time_option("--from", from_time), _time_option("--to", to_time)
    backfill_id, count = store.start_backfill(name, start, end, max_parallel)
    data = {"id": backfill_id, "schedule": name, "fire_times": count}
    if print_data(data, current.output) or current.quiet:
        return
    sys.stdout.write(
        f"backfill {backfill_id} of schedule {name}: {count} fire times; "
        f"`spane schedule get {name}` shows its progress\n"
    )


def _schedule_inputs(pairs: list[str]) -> dict[str, object]:
    """`-i K=V` of a schedule: JSON when it parses, else text (the workflow's input types
    apply when each fire is submitted)."""
    from spane_cli.errors import UsageError
    from spane_cli.workflow.input_values import InputTextError, typed_pairs

    try:
        return typed_pairs(pairs, ())
    except InputTextError as exc:
        raise UsageError(str(exc)) from None
