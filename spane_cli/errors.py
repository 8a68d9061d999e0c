"""The one error root of spane, with the exit code each kind of failure maps to.

The CLI catches `SpaneError` and prints `message` as one line on stderr; anything else is a
bug and is shown as such (with a traceback only under --debug).
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Exit codes scripts and cron rely on (SPEC §2)."""

    OK = 0
    FAILED = 1
    USAGE = 2
    UNREACHABLE = 3
    NOT_FOUND = 4
    CANCELLED = 5
    TIMED_OUT = 124


class SpaneError(Exception):
    """Root of every expected failure; carries a one-line message and an exit code."""

    exit_code: ExitCode = ExitCode.FAILED

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UsageError(SpaneError):
    """Raised for bad flags, bad input values or an invalid workflow file."""

    exit_code = ExitCode.USAGE


class WorkflowInvalid(UsageError):
    """Raised when a workflow file has validation problems; holds all of them."""

    def __init__(self, problems: list) -> None:  # list[Problem], kept loose to avoid a cycle
        self.problems = problems
        first = problems[0].render() if problems else "invalid workflow"
        more = (
            f" (and {len(problems) - 1} more: spane validate lists them all)"
            if len(problems) > 1
            else ""
        )
        super().__init__(first + more)


class ServiceUnreachable(SpaneError):
    """Raised when Redis or the database does not answer; the message names which."""

    exit_code = ExitCode.UNREACHABLE


class NotFound(SpaneError):
    """Raised for an unknown execution, workflow or dead letter."""

    exit_code = ExitCode.NOT_FOUND


class OperationFailed(SpaneError):
    """Raised when an operation was refused or did not succeed (e.g. a replayed dead letter)."""

    exit_code = ExitCode.FAILED
