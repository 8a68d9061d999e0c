"""What each due fire time does: the misfire policy for fires no worker was there for, the
starting deadline, and the overlap policy. Pure, on a test clock."""

from __future__ import annotations

from spane_cli.fires import Decision, plan_fires
from spane_cli.workflow.schedule_spec import MisfirePolicy, OverlapPolicy, ScheduleSpec

T0 = 1_800_000_000.0  # a fire time; the ones below follow every 2 s
DUE = [T0 + 2 * i for i in range(10)]
ALWAYS_A_WORKER = [(T0 - 1000, T0 + 1000)]


def spec(**fields: object) -> ScheduleSpec:
    return ScheduleSpec("s", every=2.0, **fields)  # type: ignore[arg-type]


def decisions(plans: list) -> list[str]:
    return [str(p.decision) for p in plans]


def test_fires_a_worker_was_there_for_all_run_even_when_seen_late() -> None:
    plans = plan_fires(spec(misfire=MisfirePolicy.SKIP), DUE, DUE[-1] + 5, ALWAYS_A_WORKER, None)
    assert decisions(plans) == ["ran"] * 10


def test_misfire_skip_once_all_after_every_worker_was_stopped() -> None:
    # Workers ran until T0+5 and again from T0+15: the fires at T0+6 .. T0+14 were missed.
    spans = [(T0 - 100, T0 + 5), (T0 + 15, T0 + 30)]
    now = T0 + 19
    skip = plan_fires(spec(misfire=MisfirePolicy.SKIP), DUE, now, spans, None)
    assert decisions(skip) == ["ran"] * 3 + ["missed"] * 5 + ["ran"] * 2
    once = plan_fires(spec(misfire=MisfirePolicy.ONCE), DUE, now, spans, None)
    assert decisions(once) == ["ran"] * 3 + ["missed"] * 4 + ["ran"] * 3
    assert once[7].fire_time == T0 + 14  # the latest missed one is the one that runs
    every = plan_fires(spec(misfire=MisfirePolicy.ALL), DUE, now, spans, None)
    assert decisions(every) == ["ran"] * 10


def test_the_starting_deadline_bounds_every_catch_up() -> None:
    now = DUE[-1] + 1  # nobody was running for any of them
    plans = plan_fires(spec(misfire=MisfirePolicy.ALL, starting_deadline=6), DUE, now, [], None)
    # Fires more than 6 s old are missed whatever the policy; the rest are caught up.
    assert decisions(plans) == ["missed"] * 7 + ["ran"] * 3
    assert "starting_deadline" in plans[0].reason
    once = plan_fires(spec(misfire=MisfirePolicy.ONCE, starting_deadline=6), DUE, now, [], None)
    assert decisions(once) == ["missed"] * 9 + ["ran"]


def test_overlap_forbid_skips_while_the_previous_execution_is_open() -> None:
    plans = plan_fires(spec(overlap=OverlapPolicy.FORBID), DUE[:1], DUE[0], ALWAYS_A_WORKER, "e1")
    assert decisions(plans) == ["skipped-overlap"]
    assert "e1" in plans[0].reason
    # A catch-up of several fires with nothing open: the first runs, it overlaps the rest.
    catch_up = plan_fires(
        spec(overlap=OverlapPolicy.FORBID), DUE[:3], DUE[2], ALWAYS_A_WORKER, None
    )
    assert decisions(catch_up) == ["ran", "skipped-overlap", "skipped-overlap"]


def test_overlap_replace_cancels_the_previous_execution_and_runs_the_latest() -> None:
    plans = plan_fires(spec(overlap=OverlapPolicy.REPLACE), DUE[:3], DUE[2], ALWAYS_A_WORKER, "e1")
    assert decisions(plans) == ["skipped-overlap", "skipped-overlap", "ran"]
    assert plans[-1].replaces == "e1"
    alone = plan_fires(spec(overlap=OverlapPolicy.REPLACE), DUE[:1], DUE[0], ALWAYS_A_WORKER, None)
    assert decisions(alone) == ["ran"] and alone[0].replaces is None


def test_overlap_allow_runs_alongside() -> None:
    plans = plan_fires(spec(), DUE[:2], DUE[1], ALWAYS_A_WORKER, "e1")
    assert decisions(plans) == ["ran", "ran"]
    assert all(p.decision is Decision.RAN for p in plans)
