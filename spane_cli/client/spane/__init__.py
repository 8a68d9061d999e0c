"""`import spane`: the Python client (spane_cli/client), under the project's name.

Installed as the top-level package `spane` (pyproject.toml maps it to this folder). Its names
are the client's own objects, not copies: `spane.Client is spane_cli.client.http.Client`, and
`spane.errors` is `spane_cli.client.errors`, so an `except spane.NotFound` catches what either
client raises."""

from __future__ import annotations

import sys

from spane_cli.client import *  # noqa: F403 - the client's names are this package's
from spane_cli.client import __all__, errors

sys.modules[f"{__name__}.errors"] = errors  # `from spane.errors import NotFound` too

__all__ = list(__all__)
