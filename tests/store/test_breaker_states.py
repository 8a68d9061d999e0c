"""The circuit breaker of an http host through the Store, as workers use it: admitted before
the claim, counted with the node's end; closed, open, half open with one probe, closed again
or reset by an operator; on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from functools import partial
from typing import Any

import pytest
from store_steps import claim_one, complete_one
from test_concurrent_transitions import at_once

from spane_cli.store import events
from spane_cli.store.breakers import PROBE_CLAIM_SECONDS, Admission, BreakerView, probe_name
from spane_cli.store.db import open_database
from spane_cli.store.models import Event
from spane_cli.store.records import ClaimedNode, Report
from spane_cli.store.store import Store
from spane_cli.store.versions import register_version
from spane_cli.workflow.limits import BreakerSpec

DOWN = Report("failed", error="HTTP 503 Service Unavailable", http_status=503)
UP = Report("succeeded", output={"status": 200}, http_status=200)


def calling(
    store: Store, failures: int = 3, window: str = "1m", open_for: str = "30s"
) -> tuple[int, BreakerSpec]:
    """A workflow whose one http node calls a host of this test's own, behind a breaker."""
    host = f"api-{uuid.uuid4().hex[:12]}.example.test"
    limits = {"failures": failures, "window": window, "open_for": open_for}
    data = {
        "version": 1,
        "name": f"calls-{host.split('.')[0]}",
        "circuit_breakers": {host: limits},
        "nodes": {"call": {"type": "http", "config": {"url": f"http://{host}/ping"}}},
    }
    version_id = int(register_version(store.database, str(data["name"]), data, {}).id)
    spec = store.versions.get(version_id).workflow.nodes["call"].breaker
    assert spec is not None and spec.host == host
    return version_id, spec


def admit(
    store: Store, version_id: int, spec: BreakerSpec, now: float
) -> tuple[str, Admission | None]:
    """A new execution whose node's job a worker took at `now`: what the breaker says."""
    execution_id = store.create_execution(version_id, {}, now=now)[0]
    return execution_id, store.breaker_admit(spec, execution_id, "call", 1, None, now=now)


def started(store: Store, version_id: int, spec: BreakerSpec, now: float) -> ClaimedNode:
    """A run the breaker let through, claimed as the worker does next."""
    execution_id, admission = admit(store, version_id, spec, now)
    assert admission is None, admission
    claim = claim_one(store, execution_id, "call", 1, f"w-{execution_id[:6]}", now=now)
    assert claim is not None
    return claim


def ended(store: Store, version_id: int, spec: BreakerSpec, now: float, report: Report) -> str:
    """A run let through at `now` that ends at once with `report`; its execution."""
    claim = started(store, version_id, spec, now)
    complete_one(store, claim, report, now=now)
    return claim.execution_id


def breaker(store: Store, spec: BreakerSpec) -> BreakerView | None:
    """What `spane breaker list` shows of this host."""
    return next((view for view in store.list_breakers() if view.host == spec.host), None)


def breaker_events(execution_ids: list[str]) -> list[tuple[str, str, dict[str, Any]]]:
    rows = (
        Event.select()
        .where(
            Event.execution_id.in_(execution_ids)
            & Event.type.in_([events.BREAKER_OPENED, events.BREAKER_CLOSED])
        )
        .order_by(Event.id)
    )
    return [(row.execution_id, row.type, row.data) for row in rows]


def opened(store: Store, version_id: int, spec: BreakerSpec, at: float) -> list[str]:
    """Open a breaker of failures=3 by three failures ending at `at`."""
    ids = [ended(store, version_id, spec, at - 2 + n, DOWN) for n in range(3)]
    view = breaker(store, spec)
    assert view is not None and (view.state, view.open_until) == ("open", at + spec.open_for)
    return ids


def two_counted_then_a_third_opens(
    store: Store, version_id: int, spec: BreakerSpec, at: float
) -> None:
    """Of a breaker of 3 failures: 2 are counted and it is closed; one more at `at` opens it."""
    view = breaker(store, spec)
    assert view is not None and (view.state, view.failures) == ("closed", 2)
    ended(store, version_id, spec, at, DOWN)
    view = breaker(store, spec)
    assert view is not None and view.state == "open"


def test_failures_within_the_window_open_the_breaker(store: Store) -> None:
    version_id, spec = calling(store, failures=3, window="1m", open_for="30s")
    first = ended(store, version_id, spec, 1000.0, DOWN)
    second = ended(store, version_id, spec, 1010.0, DOWN)
    view = breaker(store, spec)
    assert view is not None and (view.state, view.failures) == ("closed", 2)
    assert admit(store, version_id, spec, 1015.0)[1] is None  # two are not enough
    third = ended(store, version_id, spec, 1020.0, DOWN)
    view = breaker(store, spec)
    assert view is not None
    assert (view.state, view.opened_at, view.open_until) == ("open", 1020.0, 1050.0)
    assert view.host in {v.host for v in store.list_breakers(only_open=True)}
    # The event is on the execution whose failure opened it, and only there.
    assert breaker_events([first, second, third]) == [
        (
            third,
            events.BREAKER_OPENED,
            {"host": spec.host, "reason": "3 failures within 60s", "until": 1050.0},
        )
    ]
    assert admit(store, version_id, spec, 1021.0)[1] == Admission(1050.0)
    assert admit(store, version_id, spec, 1049.99)[1] == Admission(1050.0)


def test_failures_older_than_the_window_do_not_count(store: Store) -> None:
    version_id, spec = calling(store, failures=3, window="1m")
    for at in (1000.0, 1030.0, 1070.0, 1095.0):
        ended(store, version_id, spec, at, DOWN)
        view = breaker(store, spec)
        assert view is not None and view.state == "closed", at
    # 1000 and 1030 have left the window: only 1070 and 1095 are kept, and count.
    assert breaker(store, spec) == BreakerView(spec.host, "closed", 2, None, None, None, 1095.0)
    ended(store, version_id, spec, 1100.0, DOWN)
    view = breaker(store, spec)
    assert view is not None and (view.state, view.open_until) == ("open", 1130.0)


def test_answers_that_show_the_host_up_and_refused_runs_are_not_counted(store: Store) -> None:
    version_id, spec = calling(store, failures=3)
    for at in (1000.0, 1001.0, 1002.0):
        ended(store, version_id, spec, at, Report("failed", error="HTTP 404", http_status=404))
    assert breaker(store, spec) is None  # nothing counted: no row for `breaker list`
    ended(store, version_id, spec, 1003.0, Report("failed", error="timed out"))  # counts
    ended(store, version_id, spec, 1004.0, Report("failed", error="HTTP 429", http_status=429))
    # A run the breaker itself refused (on_open: fail) never reached the host.
    refused = Report("failed", error="circuit open for host", refused=True)
    ended(store, version_id, spec, 1005.0, refused)
    ended(store, version_id, spec, 1006.0, UP)
    two_counted_then_a_third_opens(store, version_id, spec, 1007.0)


def test_after_open_for_exactly_one_probe_is_let_through(store: Store) -> None:
    version_id, spec = calling(store, failures=3, open_for="30s")
    opened(store, version_id, spec, at=1020.0)
    assert admit(store, version_id, spec, 1049.999)[1] == Admission(1050.0)
    probe_id, admission = admit(store, version_id, spec, 1050.0)
    assert admission is None
    view = breaker(store, spec)
    assert view is not None
    assert (view.state, view.probe) == ("half_open", probe_name(probe_id, "call", 1, None))
    # A second caller while the probe is chosen, then while it runs: refused, with no end
    # time (the probe decides).
    assert admit(store, version_id, spec, 1050.5)[1] == Admission(None)
    assert claim_one(store, probe_id, "call", 1, "prober", now=1051.0) is not None
    assert admit(store, version_id, spec, 1051.0 + PROBE_CLAIM_SECONDS + 30)[1] == Admission(None)
    view = breaker(store, spec)
    assert view is not None and view.probe == probe_name(probe_id, "call", 1, None)


def test_a_probe_that_succeeds_closes_the_breaker_and_clears_its_failures(
    store: Store,
) -> None:
    version_id, spec = calling(store, failures=3, window="1m", open_for="30s")
    opened(store, version_id, spec, at=1020.0)
    probe = started(store, version_id, spec, 1050.0)
    complete_one(store, probe, UP, now=1052.0)
    assert breaker(store, spec) == BreakerView(spec.host, "closed", 0, None, None, None, 1052.0)
    assert breaker_events([probe.execution_id]) == [
        (probe.execution_id, events.BREAKER_CLOSED, {"host": spec.host})
    ]
    assert spec.host not in {v.host for v in store.list_breakers(only_open=True)}
    assert admit(store, version_id, spec, 1053.0)[1] is None
    # The failures that opened it (1018-1020) are within a minute of these, yet forgotten.
    ended(store, version_id, spec, 1060.0, DOWN)
    ended(store, version_id, spec, 1061.0, DOWN)
    two_counted_then_a_third_opens(store, version_id, spec, 1062.0)


def test_a_probe_that_fails_opens_it_again_for_open_for(store: Store) -> None:
    version_id, spec = calling(store, failures=3, open_for="30s")
    opened(store, version_id, spec, at=1020.0)
    probe = started(store, version_id, spec, 1050.0)
    complete_one(store, probe, DOWN, now=1053.0)
    view = breaker(store, spec)
    assert view is not None
    assert (view.state, view.opened_at, view.open_until, view.probe) == (
        "open",
        1053.0,
        1083.0,
        None,
    )
    assert breaker_events([probe.execution_id]) == [
        (
            probe.execution_id,
            events.BREAKER_OPENED,
            {"host": spec.host, "reason": "its probe failed", "until": 1083.0},
        )
    ]
    assert admit(store, version_id, spec, 1082.0)[1] == Admission(1083.0)
    next_probe, admission = admit(store, version_id, spec, 1083.0)
    assert admission is None
    view = breaker(store, spec)
    assert view is not None and view.probe == probe_name(next_probe, "call", 1, None)


def test_a_run_older_than_the_opening_ending_while_half_open_is_left_to_the_probe(
    store: Store,
) -> None:
    version_id, spec = calling(store, failures=3, open_for="30s")
    slow = started(store, version_id, spec, 1000.0)  # let through while closed
    opened(store, version_id, spec, at=1020.0)
    probe = started(store, version_id, spec, 1050.0)
    complete_one(store, slow, DOWN, now=1051.0)
    view = breaker(store, spec)
    assert view is not None
    assert (view.state, view.probe) == (
        "half_open",
        probe_name(probe.execution_id, "call", 1, None),
    )
    assert breaker_events([slow.execution_id]) == []
    complete_one(store, probe, UP, now=1052.0)
    view = breaker(store, spec)
    assert view is not None and view.state == "closed"


def test_a_probe_that_never_started_or_whose_worker_died_is_replaced(store: Store) -> None:
    version_id, spec = calling(store, failures=3, open_for="30s")
    opened(store, version_id, spec, at=1020.0)
    lost, admission = admit(store, version_id, spec, 1050.0)  # its worker never claims it
    assert admission is None
    assert admit(store, version_id, spec, 1050.0 + PROBE_CLAIM_SECONDS - 0.1)[1] == Admission(None)
    second, admission = admit(store, version_id, spec, 1050.0 + PROBE_CLAIM_SECONDS + 0.1)
    assert admission is None
    view = breaker(store, spec)
    assert view is not None and view.probe == probe_name(second, "call", 1, None)
    assert probe_name(lost, "call", 1, None) != view.probe
    # The new probe runs, then its worker is known dead: its node is queued again, and the
    # next caller becomes the probe.
    assert claim_one(store, second, "call", 1, "dead", now=1056.0) is not None
    assert admit(store, version_id, spec, 1070.0)[1] == Admission(None)
    store.release_worker("dead", now=1071.0)
    third, admission = admit(store, version_id, spec, 1072.0)
    assert admission is None
    view = breaker(store, spec)
    assert view is not None and view.probe == probe_name(third, "call", 1, None)


def test_reset_closes_an_open_breaker_and_forgets_its_failures(store: Store) -> None:
    version_id, spec = calling(store, failures=3, open_for="30s")
    other_version, other = calling(store, failures=3, open_for="30s")
    ids = opened(store, version_id, spec, at=1020.0)
    opened(store, other_version, other, at=1020.0)
    assert store.reset_breakers(spec.host, now=1021.0) == 1  # `spane breaker reset HOST`
    assert breaker(store, spec) is None
    assert admit(store, version_id, spec, 1022.0)[1] is None
    # Only that host's: the other breaker stays open.
    assert admit(store, other_version, other, 1022.0)[1] == Admission(1050.0)
    assert store.reset_breakers(f"nothing-{spec.host}", now=1023.0) == 0  # "no breaker for"
    ended(store, version_id, spec, 1024.0, DOWN)
    ended(store, version_id, spec, 1025.0, DOWN)
    view = breaker(store, spec)
    assert view is not None and (view.state, view.failures) == ("closed", 2)
    assert [kind for _, kind, _ in breaker_events(ids)] == [events.BREAKER_OPENED]


def test_callers_on_two_stores_racing_for_the_probe_let_exactly_one_through(
    store: Store, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue(f"{request.node.callspec.params['store']}_url")
    other = Store(open_database(url))  # another worker's process: its own connections
    store.bind()
    try:
        version_id, spec = calling(store, failures=1, open_for="10s")
        ended(store, version_id, spec, 1000.0, DOWN)
        due = 1010.0
        stores = [store, other, store, other]

        def asks(caller: Store, execution_id: str) -> Admission | None:
            try:
                return caller.breaker_admit(spec, execution_id, "call", 1, None, now=due)
            finally:
                caller.database.close()  # this thread's connection

        for round_number in range(6):
            ids = [store.create_execution(version_id, {}, now=due)[0] for _ in stores]
            results = at_once(*(partial(asks, s, e) for s, e in zip(stores, ids, strict=True)))
            assert not [r for r in results if isinstance(r, Exception)], results
            winners = [e for e, r in zip(ids, results, strict=True) if r is None]
            assert len(winners) == 1, (round_number, results)
            assert sorted(map(repr, results)) == sorted([repr(None)] + [repr(Admission(None))] * 3)
            view = breaker(store, spec)
            assert view is not None
            assert (view.state, view.probe) == (
                "half_open",
                probe_name(winners[0], "call", 1, None),
            )
            # The probe fails: open again, and the next round races at its end.
            claim = claim_one(store, winners[0], "call", 1, "prober", now=due + 1)
            assert claim is not None
            complete_one(store, claim, DOWN, now=due + 2)
            due += 12.0
            view = breaker(store, spec)
            assert view is not None and (view.state, view.open_until) == ("open", due)
    finally:
        other.close()
        store.bind()
