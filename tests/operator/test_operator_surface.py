"""What an operator does at night: dead letters, retry, resubmit, events, logs, health."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import yaml
from cluster_support import ROOT, Cluster, flow, poll


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


def test_health_names_a_queue_that_has_jobs_and_no_worker(cluster: Cluster) -> None:
    cluster.start_worker()  # serves `default` only
    cluster.submit(flow("unserved", "  a: {type: noop, queue: gpu}\n"))
    poll(lambda: cluster.spane("health").returncode == 1, what="a degraded report")
    report = json.loads(cluster.spane("health", "-o", "json").stdout)
    assert report["queues"]["gpu"] == 1
    assert "queue gpu has 1 waiting jobs and no live worker serves it" in report["problems"]
    cluster.start_worker("--queue", "gpu")
    poll(lambda: cluster.spane("health").returncode == 0, what="the queue to be served")


def test_health_judges_workers_by_the_ttl_they_are_given(cluster: Cluster) -> None:
    cluster.start_worker()  # beats every 1.5 s
    poll(lambda: cluster.spane("health").returncode == 0, what="a healthy report")
    # Workers told to count a worker gone after 1 ms without a beat: health counts the same.
    strict = subprocess.run(
        [sys.executable, "-m", "spane_cli", "health", "-o", "json"],
        env={**cluster.env, "SPANE_HEARTBEAT_TTL": "0.001", "SPANE_HEARTBEAT_EVERY": "0.0005"},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert strict.returncode == 1
    assert "no live worker: start `spane worker`" in json.loads(strict.stdout)["problems"]


def test_run_watch_gives_up_after_its_timeout(cluster: Cluster) -> None:
    path = cluster.tmp_path / "never.yaml"
    path.write_text(flow("never-served", "  a: {type: noop}\n"))  # no worker runs it
    watched = cluster.spane("run", "--watch", "--timeout", "1s", str(path), timeout=30)
    assert watched.returncode == 124, watched.stderr
    assert "gave up waiting for" in watched.stderr and "(still pending)" in watched.stderr


def test_worker_logs_its_life_as_json_lines(cluster: Cluster) -> None:
    worker = cluster.start_worker("--log-format", "json", "--name", "shipped")
    poll(lambda: cluster.live_workers(), what="the worker to beat")
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0
    lines = [json.loads(line) for line in cluster.logs().splitlines() if line.strip()]
    messages = [line["message"] for line in lines]
    assert any(m.startswith("worker shipped~") and "serving default" in m for m in messages)
    assert any(m.startswith("received SIGTERM: finishing the running node") for m in messages)
    assert any(m.startswith("worker shipped~") and "stopped after 0 jobs" in m for m in messages)
    assert {"time", "level", "logger", "message", "pid"} <= set(lines[0])


def test_resubmit_with_input_overrides_waits_and_exits_as_run_does(cluster: Cluster) -> None:
    path = cluster.tmp_path / "greet.yaml"
    path.write_text(
        "version: 1\nname: greet-again\n"
        "inputs:\n  who: {type: string, default: world}\n  times: {type: integer, default: 1}\n"
        "nodes:\n  say: {type: transform, config: {output: 'hello {{ input.who }}'}}\n"
    )
    first = cluster.spane("run", "-q", str(path), "-i", "who=ops")
    cluster.start_worker()
    again = cluster.spane(
        "resubmit", first.stdout.strip()[:8], "-i", "times=3", "--wait", "-o", "json"
    )
    assert again.returncode == 0, again.stderr
    document = json.loads(again.stdout)
    assert document["input"] == {"who": "ops", "times": 3}
    assert document["id"] != first.stdout.strip()
    bad = cluster.spane("resubmit", first.stdout.strip(), "-i", "times=many")
    assert bad.returncode == 2 and "input 'times'" in bad.stderr
