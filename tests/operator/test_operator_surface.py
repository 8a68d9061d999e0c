"""What an operator does at night: dead letters, retry, resubmit, events, logs, health."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from cluster_support import ROOT, Cluster, poll


def guarded_flow(marker: Path) -> str:
    """`check` fails until `marker` exists; `load` runs after it."""
    return (
        "version: 1\nname: guarded\nnodes:\n"
        "  extract: {type: transform, config: {output: {rows: 3}}}\n"
        f"  check: {{type: shell, needs: [extract], retry: {{attempts: 2}}, "
        f"config: {{run: 'echo checking; test -f {marker}'}}}}\n"
        "  load: {type: noop, needs: [check]}\n"
    )


def test_a_dead_letter_is_replayed_once_after_the_cause_is_fixed(
    cluster: Cluster, tmp_path: Path
) -> None:
    marker = tmp_path / "fixed"
    execution_id = cluster.submit(guarded_flow(marker))
    cluster.start_worker()
    poll(lambda: cluster.status(execution_id) == "failed", what="the failure")
    letters = json.loads(cluster.spane("dlq", "list", "-o", "json").stdout)
    assert [(d["node_id"], d["attempts"]) for d in letters] == [("check", 2)]
    letter_id = str(letters[0]["id"])
    shown = json.loads(cluster.spane("dlq", "show", letter_id, "-o", "json").stdout)
    assert shown["attempts"] == 2 and shown["input"] == {"rows": 3}
    assert "checking" in shown["logs_tail"]
    marker.write_text("ok")
    replayed = cluster.spane("dlq", "replay", letter_id)
    assert replayed.returncode == 0, replayed.stderr
    poll(lambda: cluster.status(execution_id) == "succeeded", what="the replayed run")
    assert cluster.get(execution_id)["nodes"]["load"]["status"] == "succeeded"
    every = json.loads(cluster.spane("dlq", "list", "--all", "-o", "json").stdout)
    assert every[0]["replayed_at"] is not None
    again = cluster.spane("dlq", "replay", letter_id)
    assert again.returncode == 1
    assert "already replayed" in again.stderr
    assert cluster.status(execution_id) == "succeeded"
    types = [e["type"] for e in cluster.events(execution_id)]
    assert "dead_letter.added" in types and "dead_letter.replayed" in types


def test_retry_reruns_only_the_failed_node(cluster: Cluster, tmp_path: Path) -> None:
    marker = tmp_path / "fixed"
    execution_id = cluster.submit(guarded_flow(marker))
    cluster.start_worker()
    poll(lambda: cluster.status(execution_id) == "failed", what="the failure")
    marker.write_text("ok")
    assert cluster.spane("retry", execution_id).returncode == 0
    poll(lambda: cluster.status(execution_id) == "succeeded", what="the retried run")
    nodes = cluster.get(execution_id)["nodes"]
    assert nodes["extract"]["attempts"] == 1
    assert nodes["check"]["status"] == "succeeded"
    assert nodes["load"]["status"] == "succeeded"


def test_resubmit_starts_a_new_execution_with_the_same_input(cluster: Cluster) -> None:
    execution_id = cluster.submit(
        (ROOT / "workflows" / "expense-approval.yaml").read_text(), {"amount": 1500}
    )
    cluster.start_worker()
    poll(lambda: cluster.status(execution_id) == "succeeded", what="the first run")
    again = cluster.spane("resubmit", execution_id, "-q")
    assert again.returncode == 0, again.stderr
    new_id = again.stdout.strip()
    assert new_id != execution_id
    poll(lambda: cluster.status(new_id) == "succeeded", what="the resubmitted run")
    assert cluster.get(new_id)["input"] == cluster.get(execution_id)["input"]


def test_events_logs_get_list_in_machine_formats(cluster: Cluster) -> None:
    execution_id = cluster.submit(
        "version: 1\nname: chatty\nnodes:\n"
        "  talk: {type: shell, config: {run: 'echo hello from talk'}}\n"
        "  quiet: {type: noop, needs: [talk]}\n"
    )
    cluster.start_worker()
    poll(lambda: cluster.status(execution_id) == "succeeded", what="the run")
    lines = cluster.spane("events", execution_id, "-o", "json").stdout.splitlines()
    events = [json.loads(line) for line in lines]
    types = [e["type"] for e in events]
    assert types[0] == "execution.created" and types[-1] == "execution.succeeded"
    assert {"node.queued", "node.started", "node.succeeded"} <= set(types)
    logs = cluster.spane("logs", execution_id, "--node", "talk")
    assert logs.returncode == 0 and "hello from talk" in logs.stdout
    unknown_node = cluster.spane("logs", execution_id, "--node", "nope")
    assert unknown_node.returncode == 4
    as_yaml = yaml.safe_load(cluster.spane("get", execution_id, "-o", "yaml").stdout)
    assert as_yaml["id"] == execution_id and as_yaml["status"] == "succeeded"
    listed = json.loads(cluster.spane("list", "--status", "succeeded", "-o", "json").stdout)
    assert [e["id"] for e in listed] == [execution_id]
    assert listed[0]["created_at"].endswith("Z")


def test_health_exit_codes(cluster: Cluster) -> None:
    assert cluster.spane("health").returncode == 1  # no worker yet: degraded
    cluster.start_worker()
    poll(lambda: cluster.spane("health").returncode == 0, what="a healthy report")
    report = json.loads(cluster.spane("health", "-o", "json").stdout)
    assert report["status"] == "healthy" and report["workers"]
    down = cluster.spane("health", "--redis", "redis://127.0.0.1:1/0")
    assert down.returncode == 3
    assert "Redis unreachable" in down.stderr


def test_tables_fit_a_pinned_width(cluster: Cluster) -> None:
    execution_id = cluster.submit(
        "version: 1\nname: tabled\nnodes:\n"
        "  fetch_the_rows: {type: noop}\n"
        "  report: {type: fail, needs: [fetch_the_rows], config: {message: 'disk full'}}\n"
    )
    cluster.start_worker()
    poll(lambda: cluster.status(execution_id) == "failed", what="the failure")
    cluster.env["COLUMNS"] = "120"
    table = cluster.spane("get", execution_id).stdout
    assert "fetch_the_rows" in table and "succeeded" in table
    assert "disk full" in table and "failed" in table
    assert max(len(line) for line in table.splitlines()) <= 120
    listed = cluster.spane("list").stdout
    assert execution_id in listed and "tabled" in listed
    assert max(len(line) for line in listed.splitlines()) <= 120


def test_events_follow_streams_until_the_execution_ends(cluster: Cluster) -> None:
    import subprocess
    import sys

    execution_id = cluster.submit(
        "version: 1\nname: followed\nnodes:\n"
        "  one: {type: shell, config: {run: 'sleep 0.5'}}\n"
        "  two: {type: noop, needs: [one]}\n"
    )
    follower = subprocess.Popen(
        [sys.executable, "-m", "spane_cli", "events", execution_id, "--follow", "-o", "json"],
        env=cluster.env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    cluster.start_worker()
    out, err = follower.communicate(timeout=60)
    assert follower.returncode == 0, err
    types = [json.loads(line)["type"] for line in out.splitlines()]
    assert types[0] == "execution.created"
    assert types[-1] == "execution.succeeded"
    assert types.count("node.succeeded") == 2


def test_worker_max_jobs_stops_after_that_many(cluster: Cluster) -> None:
    first = cluster.submit("version: 1\nname: one\nnodes:\n  a: {type: noop}\n")
    second = cluster.submit("version: 1\nname: two\nnodes:\n  a: {type: noop}\n")
    worker = cluster.start_worker("--max-jobs", "1")
    assert worker.wait(timeout=30) == 0
    assert sorted([cluster.status(first), cluster.status(second)]) == ["pending", "succeeded"]
