"""The Python client of spane, importable as `spane`:

    import spane
    with spane.Client("http://127.0.0.1:8080", token) as client:    # over HTTP
        run = client.run("etl", {"multiplier": 3})
        for event in client.events(run.id):
            print(event["type"], event["node_id"])
    local = spane.LocalClient(database_url="postgresql://...")       # in this process

Both have the same methods (run, run_file, get, wait, cancel, events, logs) and raise the
same errors (spane.errors), one per problem kind of the API. docs/python-client.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from spane_cli.client import errors
from spane_cli.client.common import Started
from spane_cli.client.errors import (
    Conflict,
    Forbidden,
    InvalidRequest,
    InvalidWorkflow,
    NotFound,
    ServiceUnavailable,
    SpaneClientError,
    Unauthenticated,
    WaitTimeout,
)

if TYPE_CHECKING:
    from spane_cli.client.http import Client
    from spane_cli.client.local import LocalClient

__all__ = [
    "Client",
    "Conflict",
    "Forbidden",
    "InvalidRequest",
    "InvalidWorkflow",
    "LocalClient",
    "NotFound",
    "ServiceUnavailable",
    "SpaneClientError",
    "Started",
    "Unauthenticated",
    "WaitTimeout",
    "errors",
]


def __getattr__(name: str) -> Any:
    # Imported on first use: `Client` needs httpx only, `LocalClient` the engine and store.
    if name == "Client":
        from spane_cli.client.http import Client

        return Client
    if name == "LocalClient":
        from spane_cli.client.local import LocalClient

        return LocalClient
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
