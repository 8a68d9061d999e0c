"""The shell node against real subprocesses."""

from __future__ import annotations

import os
import time

import psutil

from spane_cli.nodes.shell import ShellNode
from spane_cli.states import OutcomeKind


def _live_members(pgid: int) -> list[int]:
    """Pids of live (non-zombie) processes in the group; zombies may linger unreaped where
    PID 1 does not reap orphans, and they hold nothing."""
    members = []
    for pid in psutil.pids():
        try:
            if os.getpgid(pid) == pgid and _alive(pid):
                members.append(pid)
        except OSError:
            continue
    return members


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() not in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)
    except psutil.Error:
        return False


def test_run_goes_through_sh_with_templates(context_for):
    result = ShellNode().run(
        context_for({"run": "echo hello {{ input.name }} | tr a-z A-Z"}, input={"name": "ann"})
    )
    assert result.outcome == OutcomeKind.SUCCEEDED
    assert result.output == {"exit_code": 0, "stdout": "HELLO ANN\n", "stderr": ""}
    assert result.logs == "HELLO ANN\n"


def test_args_are_argv_without_a_shell(context_for):
    config = {"args": ["printf", "%s|%s|%s", "{{ input.n }}", "{{ input.obj }}", "$HOME;*"]}
    result = ShellNode().run(context_for(config, input={"n": 3, "obj": {"a": [1]}}))
    assert result.outcome == OutcomeKind.SUCCEEDED, result.error
    assert result.output["stdout"] == '3|{"a":[1]}|$HOME;*'


def test_env_is_rendered_and_merged_and_secrets_are_not_inherited(context_for, monkeypatch):
    monkeypatch.setenv("SPANE_TEST_INHERITED", "from-worker")
    monkeypatch.setenv("SPANE_SECRET_LEAKY", "worker-secret")
    config = {
        "run": 'echo "$GREETING|$SPANE_TEST_INHERITED|$SPANE_EXECUTION_ID|$SPANE_NODE_ID|'
        '$SPANE_ATTEMPT|${SPANE_SECRET_LEAKY:-unset}"',
        "env": {"GREETING": "hi {{ input.name }}"},
    }
    result = ShellNode().run(context_for(config, input={"name": "bo"}))
    assert result.output["stdout"] == "hi bo|from-worker|e1|n1|1|unset\n"


def test_cwd(context_for, tmp_path):
    (tmp_path / "marker.txt").write_text("x")
    result = ShellNode().run(context_for({"run": "ls", "cwd": str(tmp_path)}))
    assert result.output["stdout"] == "marker.txt\n"


def test_missing_cwd_and_missing_command_fail_with_one_line(context_for, tmp_path):
    missing_dir = tmp_path / "nope"
    result = ShellNode().run(context_for({"run": "true", "cwd": str(missing_dir)}))
    assert result.outcome == OutcomeKind.FAILED
    assert result.error == f"working directory not found: {missing_dir}"
    result = ShellNode().run(context_for({"args": ["spane-no-such-command-xyz", "a"]}))
    assert result.error == "command not found: spane-no-such-command-xyz"


def test_parse_json(context_for):
    result = ShellNode().run(context_for({"run": """echo '{"rows": [1, 2]}'""", "parse": "json"}))
    assert result.outcome == OutcomeKind.SUCCEEDED
    assert result.output["json"] == {"rows": [1, 2]}
    assert result.output["exit_code"] == 0


def test_parse_json_failure_fails_the_node(context_for):
    result = ShellNode().run(context_for({"run": "echo not json", "parse": "json"}))
    assert result.outcome == OutcomeKind.FAILED
    assert result.error.startswith("parse: json: stdout is not JSON: Expecting value")
    assert "not json" in result.logs


def test_non_zero_exit_names_the_code_and_last_stderr_line(context_for):
    script = "echo partial; echo first problem >&2; echo 'the real problem' >&2; echo >&2; exit 3"
    result = ShellNode().run(context_for({"run": script}))
    assert result.outcome == OutcomeKind.FAILED
    assert result.error == "exit code 3: the real problem"
    assert "partial\n" in result.logs and "first problem" in result.logs

    assert ShellNode().run(context_for({"run": "exit 1"})).error == "exit code 1"


def test_killed_by_a_signal(context_for):
    result = ShellNode().run(context_for({"args": ["sh", "-c", "kill -9 $$"]}))
    assert result.error == "killed by signal SIGKILL"


def test_render_error_names_the_field(context_for):
    result = ShellNode().run(context_for({"run": "echo {{ parents.x }}"}, input={}))
    assert result.outcome == OutcomeKind.FAILED
    assert (
        result.error == "config.run: 'dict object' has no attribute 'x' in 'echo {{ parents.x }}'"
    )
    result = ShellNode().run(context_for({"args": ["echo", "{{ nope }}"]}))
    assert result.error.startswith("config.args[1]: ")
    result = ShellNode().run(context_for({"run": "true", "env": {"A": "{{ nope }}"}}))
    assert result.error.startswith("config.env.A: ")


def test_timeout_kills_the_whole_process_group(context_for):
    started = time.monotonic()
    result = ShellNode().run(context_for({"run": "echo $$; sleep 30 & sleep 30"}, timeout=1))
    assert result.outcome == OutcomeKind.FAILED
    assert result.error == "timed out after 1s"
    assert time.monotonic() - started < 10
    pgid = int(result.logs.split()[0])
    assert _live_members(pgid) == []


def test_timeout_escalates_to_sigkill_when_sigterm_is_ignored(context_for):
    # The ignored SIGTERM is inherited by the background sleep too.
    script = "trap '' TERM; echo $$; sleep 30 & sleep 30"
    result = ShellNode().run(context_for({"run": script}, timeout=0.5))
    assert result.error == "timed out after 500ms"
    assert _live_members(int(result.logs.split()[0])) == []


def test_background_processes_do_not_outlive_the_node(context_for):
    result = ShellNode().run(context_for({"run": "sleep 30 & echo $!"}))
    assert result.outcome == OutcomeKind.SUCCEEDED
    assert not _alive(int(result.output["stdout"]))


def test_cancel_kills_the_group(context_for, tmp_path):
    started_marker = tmp_path / "started"

    def cancel_requested() -> bool:
        # Cancel once the command is surely running.
        return started_marker.exists()

    script = f"echo $$; touch {started_marker}; sleep 30 & sleep 30"
    begin = time.monotonic()
    result = ShellNode().run(context_for({"run": script}, cancel_requested=cancel_requested))
    assert result.outcome == OutcomeKind.FAILED
    assert result.error == "cancelled"
    assert time.monotonic() - begin < 10
    assert _live_members(int(result.logs.split()[0])) == []


def test_big_output_is_capped_keeping_the_tail(context_for):
    # 200 KB on each stream: more than a pipe buffer, so a naive reader would deadlock.
    script = (
        "head -c 200000 /dev/zero | tr '\\0' a; printf END; "
        "head -c 200000 /dev/zero | tr '\\0' b >&2; printf ERR >&2"
    )
    result = ShellNode().run(context_for({"run": script}))
    assert result.outcome == OutcomeKind.SUCCEEDED
    stdout, stderr = result.output["stdout"], result.output["stderr"]
    cut = 200003 - 64 * 1024
    assert stdout == f"[... {cut} bytes cut ...]\n" + "a" * (64 * 1024 - 3) + "END"
    assert stderr == f"[... {cut} bytes cut ...]\n" + "b" * (64 * 1024 - 3) + "ERR"
    assert result.logs.endswith("ERR")


def test_secrets_are_masked_in_output_logs_and_error(context_for):
    secrets = {"TOKEN": "s3cr3t-value"}
    script = 'echo token={{ secrets.TOKEN }}; echo "bad $TOKEN" >&2; exit 2'
    config = {"run": script, "env": {"TOKEN": "{{ secrets.TOKEN }}"}}
    result = ShellNode().run(context_for(config, secrets=secrets))
    assert result.error == "exit code 2: bad ***"
    assert "s3cr3t-value" not in result.logs
    assert "token=***" in result.logs

    ok = ShellNode().run(context_for({"run": "echo {{ secrets.TOKEN }}"}, secrets=secrets))
    assert ok.output["stdout"] == "***\n"
