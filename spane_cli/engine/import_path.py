"""`--path DIR` (`spane worker`, `spane run --local`): where `python` nodes import from.

Like `rq worker --path`, each directory goes first on this process's `sys.path`; it is also
put first on PYTHONPATH, so that the processes the worker starts (the worker processes of
`--concurrency N`, a `python3` a shell node runs) import from it too.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from spane_cli.errors import UsageError


def add_import_paths(directories: Sequence[str]) -> list[str]:
    """Put `directories` (absolute, in the order given) before the rest of the import path;
    the absolute paths. UsageError, before anything changes, for one that is not a
    directory."""
    absolute = [os.path.abspath(directory) for directory in directories]
    for given, path in zip(directories, absolute, strict=True):
        if not os.path.isdir(path):
            raise UsageError(f"--path {given}: no such directory")
    if not absolute:
        return absolute
    sys.path[:] = [*absolute, *(p for p in sys.path if p not in absolute)]
    inherited = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [*absolute, *(p for p in inherited if p not in absolute)]
    )
    return absolute
