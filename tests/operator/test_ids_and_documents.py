"""Ids an operator can copy (never cut, a unique prefix accepted, bare with -o name or -q),
one document per command, and a failing run that always says why."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from helpers import run_spane

OK = "version: 1\nname: {name}\nnodes:\n  a: {{type: noop}}\n"
FAILING = "version: 1\nname: broken\nnodes:\n  a: {type: fail, config: {message: disk full}}\n"


def local_run(tmp_path: Path, text: str, *args: str, name: str = "ok") -> tuple[int, str, str]:
    path = tmp_path / f"{name}.yaml"
    path.write_text(text.format(name=name) if "{name}" in text else text)
    result = run_spane("run", "--local", *args, str(path))
    return result.exit_code, result.stdout, result.stderr


def ids_of_runs(tmp_path: Path, count: int) -> list[str]:
    return [json.loads(local_run(tmp_path, OK, "-o", "json")[1])["id"] for _ in range(count)]


def test_run_local_and_wait_print_one_json_document(tmp_path: Path) -> None:
    code, stdout, stderr = local_run(tmp_path, OK, "-o", "json")
    assert code == 0
    document = json.loads(stdout)  # one document: a second one would fail the parse
    assert document["status"] == "succeeded"
    assert f"execution {document['id']}" in stderr  # the id, at once, where it does not mix


def test_a_failing_run_says_why_on_stderr_even_when_quiet(tmp_path: Path) -> None:
    for args in (("-q",), ("-o", "json"), ("-q", "-o", "json")):
        code, _stdout, stderr = local_run(tmp_path, FAILING, *args, name="broken")
        assert code == 1
        assert "failed: node 'a' failed: disk full" in stderr, (args, stderr)


def test_tables_show_whole_ids_and_a_prefix_finds_one(tmp_path: Path) -> None:
    ids = ids_of_runs(tmp_path, 3)
    listed = run_spane("list")
    for execution_id in ids:
        assert execution_id in listed.stdout  # whole, not cut with an ellipsis
    shown = run_spane("get", ids[0][:8], "-o", "json")
    assert shown.exit_code == 0, shown.stderr
    assert json.loads(shown.stdout)["id"] == ids[0]
    assert run_spane("events", ids[1][:6]).exit_code == 0


def test_an_ambiguous_prefix_is_a_usage_error_naming_the_candidates(
    tmp_path: Path, isolated_environment: Path
) -> None:
    ids = ids_of_runs(tmp_path, 3)
    # Two of them renamed to share a 5-character start (random UUIDs rarely do).
    database = sqlite3.connect(isolated_environment / "spane.db")
    renamed = [f"abcde{i}" + execution_id[6:] for i, execution_id in enumerate(ids[:2])]
    for old, new in zip(ids[:2], renamed, strict=True):
        database.execute("UPDATE execution SET id = ? WHERE id = ?", (new, old))
        database.execute("UPDATE node_run SET execution_id = ? WHERE execution_id = ?", (new, old))
    database.commit()
    database.close()
    ambiguous = run_spane("get", "abcde")
    assert ambiguous.exit_code == 2
    assert renamed[0] in ambiguous.stderr and renamed[1] in ambiguous.stderr
    assert len(ambiguous.stderr.strip().splitlines()) == 1
    assert json.loads(run_spane("get", "abcde1", "-o", "json").stdout)["id"] == renamed[1]
    assert run_spane("get", "abc").exit_code == 4  # under 4 characters: not a prefix
    assert run_spane("cancel", "zzzz").exit_code == 4


def test_name_output_and_quiet_list_bare_ids(tmp_path: Path) -> None:
    ids = ids_of_runs(tmp_path, 2)
    for args in (("list", "-o", "name"), ("-q", "list")):
        listed = run_spane(*args)
        assert listed.stdout.split() == list(reversed(ids)), args


def test_wide_output_adds_type_duration_and_items(tmp_path: Path) -> None:
    loop = (
        "version: 1\nname: wide\nnodes:\n"
        "  each: {type: transform, foreach: [1, 2, 3], config: {output: '{{ item }}'}}\n"
    )
    code, stdout, _ = local_run(tmp_path, loop, "-o", "json", name="wide")
    assert code == 0
    execution_id = json.loads(stdout)["id"]
    shown = run_spane("get", execution_id, "-o", "wide").stdout
    assert "transform" in shown and "3/3" in shown and "duration" in shown
    listed = run_spane("list", "-o", "wide").stdout
    assert "attempts" in listed and "3/3" in listed


def test_events_follow_exits_as_watch_does(tmp_path: Path) -> None:
    _code, stdout, _ = local_run(tmp_path, FAILING, "-o", "json", name="broken")
    failed_id = json.loads(stdout)["id"]
    assert run_spane("events", "--follow", failed_id).exit_code == 1
    assert run_spane("events", failed_id).exit_code == 0  # a plain read of history
    ok_id = ids_of_runs(tmp_path, 1)[0]
    assert run_spane("events", "-f", ok_id).exit_code == 0


def test_event_times_are_readable(tmp_path: Path) -> None:
    retrying = (
        "version: 1\nname: retrying\nnodes:\n"
        "  a: {type: fail, retry: {attempts: 2, delay: 10ms}, config: {message: nope}}\n"
    )
    _code, stdout, _ = local_run(tmp_path, retrying, "-o", "json", name="retrying")
    events = run_spane("events", json.loads(stdout)["id"], "-o", "json").stdout.splitlines()
    retried = [json.loads(line) for line in events if '"node.retrying"' in line]
    assert retried and retried[0]["data"]["next_attempt_at"].endswith("Z")


def test_gc_removes_old_finished_runs_and_says_what_it_did(tmp_path: Path) -> None:
    ids = ids_of_runs(tmp_path, 2)
    dry = run_spane("gc", "--older-than", "0s", "--dry-run", "-o", "json")
    assert dry.exit_code == 0, dry.stderr
    assert json.loads(dry.stdout)["would_delete"]["execution"] == 2
    assert run_spane("list", "-q").stdout.split() == list(reversed(ids))  # dry: nothing went
    done = run_spane("gc", "--older-than", "0s")
    assert done.exit_code == 0 and "deleted: 2 execution" in done.stdout
    assert run_spane("list", "-q").stdout == ""
    assert run_spane("gc", "--older-than", "soon").exit_code == 2
    assert run_spane("gc", "--older-than", "1d", "--status", "running").exit_code == 2
