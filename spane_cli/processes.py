"""Linux process controls that keep a node's commands from outliving the worker that ran
them: a death signal for a command whose worker dies, and a supervisor that adopts (and ends)
the orphans of a worker process that died. Elsewhere both are no-ops."""

from __future__ import annotations

import ctypes
import ctypes.util
import signal

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36

# Loaded once, in the parent: a forked child calling into it must not load libraries.
_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _prctl(option: int, value: int) -> bool:
    try:
        return int(_libc.prctl(option, value, 0, 0, 0)) == 0
    except AttributeError:  # not Linux
        return False


def die_with_parent(signum: int = signal.SIGKILL) -> None:
    """In a child, before exec: get `signum` when the thread that started it ends."""
    _prctl(_PR_SET_PDEATHSIG, signum)


def become_subreaper() -> bool:
    """Orphans among this process's descendants become its children instead of init's."""
    return _prctl(_PR_SET_CHILD_SUBREAPER, 1)
