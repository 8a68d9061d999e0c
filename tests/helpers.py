"""Run the spane command line, in-process or as a process of its own, and capture what a
user would see."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from typer.testing import CliRunner


@dataclass(frozen=True)
class Result:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        """stdout and stderr together, for checks that do not care which stream."""
        return self.stdout + self.stderr


def run_spane(*args: str, input: str | bytes | None = None) -> Result:
    """`spane ARGS...` through `spane_cli.cli.app.main`, with stdout and stderr kept apart.

    The exit code is the one `main` passes to `sys.exit`; any other exception escapes, so a
    crash shows up as a test error instead of being mistaken for a result.
    """
    from spane_cli.cli.app import main

    code: int = 0
    with CliRunner().isolation(input=input) as (stdout, stderr, _output):
        try:
            main([str(arg) for arg in args])
        except SystemExit as exc:
            code = _exit_code(exc.code)
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
        out = stdout.getvalue().decode("utf-8", "replace")
        err = stderr.getvalue().decode("utf-8", "replace")
    return Result(code, out, err)


def _exit_code(code: object) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    return 1  # sys.exit("message") exits 1 after printing the message


def spane_process(
    *args: str, home: Path, env: dict[str, str] | None = None, timeout: float = 90
) -> subprocess.CompletedProcess[str]:
    """`python -m spane_cli ARGS...` in a process of its own, with SPANE_HOME at `home`: for
    tests about what a whole worker process survives."""
    return subprocess.run(
        [sys.executable, "-m", "spane_cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "SPANE_HOME": str(home), **(env or {})},
        cwd=Path(__file__).resolve().parents[1],
    )


def final_document(stdout: str) -> dict[str, Any]:
    """The one execution document `run --local -o json` (or `--wait -o json`) prints; a
    second document on stdout fails the parse."""
    return dict(json.loads(stdout))
