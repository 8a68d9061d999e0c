"""A running node's output written in batches, on SQLite and PostgreSQL: whole lines while it
runs, no secret cut in two, each line stored once with the completion, the tail kept."""

from __future__ import annotations

import pytest
from store_steps import claim_one, complete_one

from spane_cli.engine import live_logs
from spane_cli.engine.live_logs import LiveLog
from spane_cli.store.models import NodeLog
from spane_cli.store.records import ClaimedNode, Report
from spane_cli.store.store import Store
from spane_cli.store.versions import register_version


@pytest.fixture(autouse=True)
def no_flusher_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    """Batches are written when the test says so, not on the thread's period."""
    monkeypatch.setattr(live_logs._flusher, "add", lambda live: None)


def _running_shell(store: Store) -> ClaimedNode:
    data = {"version": 1, "name": "wf", "nodes": {"a": {"type": "shell", "config": {"run": "x"}}}}
    version_id = int(register_version(store.database, "wf", data, {}).id)
    execution_id, _, _ = store.create_execution(version_id, None)
    claim = claim_one(store, execution_id, "a", 1, "w1")
    assert claim is not None
    return claim


def _stored(claim: ClaimedNode) -> list[str]:
    rows = NodeLog.select().where(NodeLog.execution_id == claim.execution_id).order_by(NodeLog.id)
    return [row.text for row in rows]


def test_whole_lines_go_out_and_the_rest_is_stored_once_with_the_completion(
    store: Store,
) -> None:
    claim = _running_shell(store)
    live = LiveLog(store, claim, ["s3cr3t"])
    live.write("one\ntw")
    live.flush()
    assert _stored(claim) == ["one\n"]
    live.write("o\x00 s3c")
    live.flush()  # the open line waited a period: out, less what could start a secret
    live.write("r3t\nthree")
    live.flush()
    rest = live.close()
    live.write("after the end\n")  # an escaped process still writing: dropped
    complete_one(store, claim, Report("succeeded", logs=rest))
    text = "".join(_stored(claim))
    assert text.replace("\n", "|") == "one|two\ufffd ***|three"
    assert "s3c" not in text and "after the end" not in text
    rows = NodeLog.select().where(NodeLog.execution_id == claim.execution_id)
    assert {(row.worker, row.item, row.attempt) for row in rows} == {("w1", None, 1)}


def test_one_run_keeps_its_tail_and_counts_what_was_cut(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(live_logs, "KEEP_BYTES", 100)
    claim = _running_shell(store)
    live = LiveLog(store, claim, [])
    for number in range(10):
        live.write(f"line {number:02d} " + "x" * 31 + "\n")  # 40 bytes each
        live.flush()
    assert live.close() == ""
    text = "".join(_stored(claim))
    assert text.splitlines() == [
        "[... 320 bytes cut ...]",
        "line 08 " + "x" * 31,
        "line 09 " + "x" * 31,
    ]
    assert live.cut_bytes == 320


def test_while_the_database_is_away_what_waits_keeps_its_tail(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(live_logs, "PENDING_BYTES", 100)
    claim = _running_shell(store)
    live = LiveLog(store, claim, [])
    for number in range(10):  # never flushed: as if every write had failed
        live.write(f"line {number:02d} " + "x" * 31 + "\n")
    assert live.close().splitlines() == [
        "[... 320 bytes cut ...]",
        "line 08 " + "x" * 31,
        "line 09 " + "x" * 31,
    ]


def test_a_burst_is_written_in_batches_and_its_oldest_ones_go(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(live_logs, "FLUSH_BYTES", 100)
    monkeypatch.setattr(live_logs, "KEEP_BYTES", 200)
    claim = _running_shell(store)
    live = LiveLog(store, claim, [])
    live.write("".join(f"line {number:02d} " + "x" * 31 + "\n" for number in range(10)))
    live.flush()  # 400 bytes at once: batches of two lines, as many as fit in 200 kept
    assert live.close() == ""
    assert [len(text) for text in _stored(claim)] == [24 + 80, 80]
    lines = "".join(_stored(claim)).splitlines()
    assert lines[:2] == ["[... 240 bytes cut ...]", "line 06 " + "x" * 31]
