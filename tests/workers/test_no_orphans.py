"""A node's commands never outlive the worker that ran them: when a worker process is killed,
what its shell node started is killed too, so the node never runs in two places at once."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from cluster_support import Cluster, flow, poll


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(")")[-1].split()[0] == "Z")


def started_command(cluster: Cluster, tmp_path: Path, name: str) -> tuple[str, Path]:
    pid_file = tmp_path / f"{name}.pid"
    # A command with a child of its own: the grandchild is what a plain kill would miss.
    command = f"sleep 600 & echo $! >> {pid_file}; wait"  # one line per run
    execution_id = cluster.submit(
        flow(name, f"  long: {{type: shell, config: {{run: '{command}'}}}}\n")
    )
    return execution_id, pid_file


def test_killing_a_supervised_worker_kills_its_node_commands(
    cluster: Cluster, tmp_path: Path
) -> None:
    execution_id, pid_file = started_command(cluster, tmp_path, "orphan-supervised")
    cluster.start_worker("--concurrency", "2", "--name", "sup")
    poll(lambda: pid_file.exists() and pid_file.read_text().strip(), what="the command")
    grandchild = int(pid_file.read_text().split()[0])
    worker = cluster.query(
        "SELECT h.pid FROM worker_heartbeat h JOIN node_run n ON n.worker = h.name"
        " WHERE n.execution_id = %s AND n.status = 'running'",
        (execution_id,),
    )[0][0]
    os.kill(int(worker), signal.SIGKILL)
    poll(lambda: not alive(grandchild), deadline=10, what="the orphaned command to be killed")
    # The node ran again on the other child; cancelling it ends that run too, before the
    # test's teardown kills the whole group (which would orphan it for good).
    poll(lambda: len(pid_file.read_text().split()) == 2, what="the second run")
    cluster.spane("cancel", execution_id)
    second = int(pid_file.read_text().split()[1])
    poll(lambda: not alive(second), deadline=10, what="the cancelled run to be killed")


def test_killing_a_lone_worker_kills_every_process_its_command_started(
    cluster: Cluster, tmp_path: Path
) -> None:
    execution_id, pid_file = started_command(cluster, tmp_path, "orphan-lone")
    worker = cluster.start_worker()
    poll(lambda: pid_file.exists() and pid_file.read_text().strip(), what="the command")
    grandchild = int(pid_file.read_text().split()[0])
    os.killpg(worker.pid, signal.SIGKILL)  # the worker only: the command has its own group
    poll(lambda: not alive(grandchild), deadline=10, what="the command's own child to die")
    cluster.spane("cancel", execution_id)


def test_past_the_stop_grace_the_node_is_dropped_and_runs_again(
    cluster: Cluster, tmp_path: Path
) -> None:
    pid_file = tmp_path / "graced.pid"
    command = f"echo $$ > {pid_file}; exec sleep 600"
    execution_id = cluster.submit(
        flow("graced", f"  long: {{type: shell, config: {{run: '{command}'}}}}\n")
    )
    fast = {"SPANE_STOP_GRACE": "1", "SPANE_CANCEL_CHECK_EVERY": "0.2"}
    worker = cluster.start_worker(env=fast)
    poll(lambda: pid_file.exists() and pid_file.read_text().strip(), what="the command")
    first_run = int(pid_file.read_text())
    worker.send_signal(signal.SIGTERM)
    # It did not wait out the 600 s command, and says it was a forced stop.
    assert worker.wait(timeout=15) == 1
    assert not alive(first_run)
    pid_file.unlink()
    # Another worker takes the node over (after the heartbeat TTL, the stopped one is gone).
    cluster.start_worker(env={**fast, "SPANE_HEARTBEAT_TTL": "2", "SPANE_HEARTBEAT_EVERY": "0.5"})
    poll(lambda: pid_file.exists() and pid_file.read_text().strip(), 30, "the second run")
    cluster.spane("cancel", execution_id)


STUCK_IN_C = """
def stuck(context):
    return sum(range(10**13))  # one C call: no signal handler runs until it returns
"""


def test_a_python_node_stuck_in_one_c_call_times_out_and_the_worker_serves_on(
    cluster: Cluster, tmp_path: Path
) -> None:
    (tmp_path / "stuck_module.py").write_text(STUCK_IN_C)
    execution_id = cluster.submit(
        flow(
            "stuck-in-c",
            "  n: {type: python, timeout: 1s, config: {function: 'stuck_module:stuck'}}\n"
            "  after: {type: noop, needs: [n], trigger: all_done}\n",
        )
    )
    cluster.start_worker("--concurrency", "2", env={"PYTHONPATH": str(tmp_path)})
    poll(lambda: cluster.node_status(execution_id, "n") == "running", what="the stuck node")
    started = time.monotonic()
    poll(lambda: cluster.status(execution_id) == "failed", 20, "the execution to fail")
    took = time.monotonic() - started
    node = cluster.get(execution_id)["nodes"]["n"]
    assert node["error"].startswith("timed out after 1s"), node
    assert cluster.get(execution_id)["nodes"]["after"]["status"] == "succeeded"
    assert took < 1 + 2 + 1, f"failed {took:.1f} s after it started"


STUCK_WITHOUT_TIMEOUT = """
import os


def stuck(context):
    with open(os.environ["STUCK_LOG"], "a") as log:
        log.write(f"{os.getpid()}\\n")
    return sum(range(10**13))  # holds the interpreter: not even the heartbeat thread runs
"""


def test_a_worker_that_cannot_beat_is_killed_before_its_node_runs_elsewhere(
    cluster: Cluster, tmp_path: Path
) -> None:
    (tmp_path / "stuck_module.py").write_text(STUCK_WITHOUT_TIMEOUT)
    runs = tmp_path / "runs.log"
    execution_id = cluster.submit(
        flow("no-pulse", "  n: {type: python, config: {function: 'stuck_module:stuck'}}\n")
    )
    fast = {"SPANE_HEARTBEAT_EVERY": "0.5", "SPANE_HEARTBEAT_TTL": "3"}
    env = {"PYTHONPATH": str(tmp_path), "STUCK_LOG": str(runs), **fast}
    cluster.start_worker("--concurrency", "2", env=env)

    def started() -> list[int]:
        return [int(pid) for pid in runs.read_text().split()] if runs.exists() else []

    seen: list[int] = []

    def each_run_alone_until_the_end() -> bool:
        for pid in started()[len(seen) :]:
            # A new run of the node started: every earlier one is no longer running.
            assert not [p for p in seen if alive(p)], (seen, pid)
            seen.append(pid)
        return cluster.status(execution_id) == "failed"

    poll(each_run_alone_until_the_end, 90, "the node to fail after its workers were lost")
    assert len(seen) >= 2
    assert "worker lost" in cluster.get(execution_id)["nodes"]["n"]["error"]
