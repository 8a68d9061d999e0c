"""`spane logs` while nodes run: output reaches the database as it is written, on real workers."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from cluster_support import FAST_RECOVERY, ROOT, Cluster, flow, poll


def _line_reader(process: subprocess.Popen[str]) -> queue.Queue[tuple[float, str]]:
    """Each line of the process's stdout with the time it arrived."""
    lines: queue.Queue[tuple[float, str]] = queue.Queue()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put((time.monotonic(), line.rstrip("\n")))

    threading.Thread(target=read, daemon=True).start()
    return lines


def _next_line(lines: queue.Queue[tuple[float, str]], within: float) -> tuple[float, str]:
    try:
        return lines.get(timeout=within)
    except queue.Empty:
        raise AssertionError(f"no line within {within} s") from None


def test_a_running_node_s_lines_are_followed_as_they_are_written(cluster: Cluster) -> None:
    step = cluster.gate("step")
    done = cluster.gate("done")
    execution_id = cluster.submit(
        flow(
            "live",
            "  talk:\n    type: shell\n    config:\n      run: |\n"
            "        echo first line; echo 'to stderr' >&2\n"
            f"        {step.wait}\n"
            "        echo second line\n"
            f"        {done.wait}\n"
            "        echo last line\n",
        )
    )
    cluster.start_worker()
    poll(lambda: "first line" in cluster.spane("logs", execution_id).stdout, 20, "first line")
    assert cluster.node_status(execution_id, "talk") == "running"
    # Two pipes read by two threads: their relative order is whichever came first.
    first_two = {"[talk#1] first line", "[talk#1] to stderr"}
    assert set(cluster.spane("logs", execution_id).stdout.splitlines()) == first_two

    follower = subprocess.Popen(
        [sys.executable, "-m", "spane_cli", "logs", execution_id, "-f"],
        stdout=subprocess.PIPE,
        text=True,
        env=cluster.env,
        cwd=ROOT,
    )
    try:
        lines = _line_reader(follower)
        assert {_next_line(lines, 20)[1], _next_line(lines, 5)[1]} == first_two
        written = time.monotonic()
        step.open()
        arrived, line = _next_line(lines, 10)
        assert line == "[talk#1] second line"
        # The gate is polled every 50 ms and the follower every 300 ms, the batch every 500.
        assert arrived - written < 1.5
        assert cluster.node_status(execution_id, "talk") == "running"
        done.open()
        assert _next_line(lines, 20)[1] == "[talk#1] last line"
        assert follower.wait(timeout=30) == 0  # as `spane watch`: the execution succeeded
        assert lines.empty()
    finally:
        follower.kill()
        follower.wait()
        assert follower.stdout is not None
        follower.stdout.close()
    # Streamed batches and the rest stored with the completion: each line once.
    final = cluster.spane("logs", execution_id).stdout.splitlines()
    assert set(final[:2]) == first_two
    assert final[2:] == ["[talk#1] second line", "[talk#1] last line"]


def test_follow_exits_as_watch_does_for_a_failed_run(cluster: Cluster) -> None:
    execution_id = cluster.submit(
        flow("fails", "  bad: {type: shell, config: {run: 'echo going down; exit 3'}}\n")
    )
    cluster.start_worker()
    followed = cluster.spane("logs", execution_id, "--follow", timeout=60)
    assert followed.returncode == 1
    assert followed.stdout.splitlines() == ["[bad#1] going down"]


def test_follow_gives_up_with_124_when_its_timeout_runs_out(cluster: Cluster) -> None:
    hold = cluster.gate("hold")
    execution_id = cluster.submit(
        flow("held", f"  hold: {{type: shell, config: {{run: 'echo waiting; {hold.wait}'}}}}\n")
    )
    cluster.start_worker()
    poll(lambda: "waiting" in cluster.spane("logs", execution_id).stdout, 20, "the first line")
    followed = cluster.spane("logs", execution_id, "-f", "--timeout", "1s")
    assert followed.returncode == 124
    assert followed.stdout.splitlines() == ["[hold#1] waiting"]
    assert cluster.status(execution_id) == "running"
    bad = cluster.spane("logs", execution_id, "-f", "--timeout", "soon")
    assert bad.returncode == 2 and "--timeout" in bad.stderr
    hold.open()


PYTHON_MODULE = """
import os, time

def talk(context, gate):
    print("printed first")
    context.logger.info("then logged")
    while not os.path.exists(gate):
        time.sleep(0.05)
    print("printed last")
    raise RuntimeError("and then it broke")
"""


def test_a_python_node_s_prints_and_log_records_stream_in_order(
    cluster: Cluster, tmp_path: Path
) -> None:
    (tmp_path / "talk_module.py").write_text(PYTHON_MODULE)
    hold = cluster.gate("hold")
    execution_id = cluster.submit(
        flow(
            "pytalk",
            "  talk:\n    type: python\n"
            f"    config: {{function: 'talk_module:talk', kwargs: {{gate: '{hold.path}'}}}}\n",
        )
    )
    cluster.start_worker(env={"PYTHONPATH": str(tmp_path)})
    poll(lambda: "then logged" in cluster.spane("logs", execution_id).stdout, 20, "the record")
    running = cluster.spane("logs", execution_id).stdout.splitlines()
    assert running[0] == "[talk#1] printed first"
    assert running[1].startswith("[talk#1] ") and running[1].endswith("then logged")
    assert len(running) == 2
    hold.open()
    poll(lambda: cluster.status(execution_id) == "failed", 20, "the run to fail")
    ended = cluster.spane("logs", execution_id).stdout.splitlines()
    assert ended[:2] == running and ended[2] == "[talk#1] printed last"
    assert ended[-1] == "[talk#1] RuntimeError: and then it broke"
    assert sum("printed first" in line for line in ended) == 1


def test_foreach_item_lines_name_the_item_and_secrets_stay_masked(cluster: Cluster) -> None:
    execution_id = cluster.submit(
        flow(
            "items",
            "  each:\n    type: shell\n    foreach: ['red', 'blue']\n"
            '    config:\n      run: "echo colour {{ item }} $TOKEN"\n'
            "      env: {TOKEN: '{{ secrets.TOKEN }}'}\n",
        )
    )
    cluster.start_worker(env={"SPANE_SECRET_TOKEN": "hunter2-secret"})
    poll(lambda: cluster.status(execution_id) == "succeeded", 30, "the items")
    shown = sorted(cluster.spane("logs", execution_id).stdout.splitlines())
    assert shown == ["[each#1 item 0=red] colour red ***", "[each#1 item 1=blue] colour blue ***"]
    stored = cluster.query("SELECT text FROM node_log WHERE execution_id = %s", (execution_id,))
    assert stored and all("hunter2" not in text for (text,) in stored)


def test_a_chatty_node_keeps_its_tail_and_says_how_much_was_cut(cluster: Cluster) -> None:
    from spane_cli.engine.live_logs import KEEP_BYTES

    hold = cluster.gate("hold")
    # 4,000 lines of 101 bytes while running: well past what one run keeps.
    execution_id = cluster.submit(
        flow(
            "chatty",
            "  loud:\n    type: shell\n    config:\n      run: |\n"
            "        i=0; while [ $i -lt 4000 ]; do printf '%04d %095d\\n' $i 0; i=$((i+1)); done\n"
            f"        {hold.wait}\n"
            "        echo bye\n",
        )
    )
    cluster.start_worker()
    poll(lambda: "3999 " in cluster.spane("logs", execution_id).stdout, 30, "the last loud line")
    hold.open()
    poll(lambda: cluster.status(execution_id) == "succeeded", 30, "the run")
    rows = cluster.query(
        "SELECT text FROM node_log WHERE execution_id = %s ORDER BY id", (execution_id,)
    )
    text = "".join(row for (row,) in rows)
    assert len(text.encode()) < KEEP_BYTES + 64 * 1024 + 100
    assert text.startswith("[... ") and " bytes cut ...]\n" in text.splitlines(keepends=True)[0]
    cut = int(text.split()[1])
    kept_lines = text.splitlines()[1:]
    assert kept_lines[-1] == "bye" and kept_lines[-2].startswith("3999 ")
    # Whole lines were cut, and every line before the first one kept is counted.
    first_kept = int(kept_lines[0].split()[0])
    assert cut == first_kept * 101


def test_a_rerun_after_a_lost_worker_is_labelled_as_a_second_run(cluster: Cluster) -> None:
    lost = cluster.gate("lost")
    execution_id = cluster.submit(
        flow(
            "rerun",
            "  slow:\n    type: shell\n    config:\n      run: |\n"
            "        echo starting\n"
            f"        {lost.wait}\n"
            "        echo finished\n",
        )
    )
    first = cluster.start_worker(env=FAST_RECOVERY)
    poll(lambda: "starting" in cluster.spane("logs", execution_id).stdout, 20, "the first run")
    os.killpg(first.pid, signal.SIGKILL)  # its streamed line stays; nothing else is lost
    first.wait(timeout=10)
    lost.open()
    cluster.start_worker(env=FAST_RECOVERY)
    poll(lambda: cluster.status(execution_id) == "succeeded", 45, "the rerun")
    assert cluster.spane("logs", execution_id).stdout.splitlines() == [
        "[slow#1] starting",
        "[slow#1 run 2] starting",
        "[slow#1 run 2] finished",
    ]
