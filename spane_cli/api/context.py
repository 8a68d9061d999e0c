"""What routes need from the process, as FastAPI dependencies: the settings, the store, the
dispatcher. Each is opened on first use and shared by the process's requests; nothing in it
is state another instance would need (that is all in the database)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fastapi import Request

from spane_cli.config import Settings

if TYPE_CHECKING:
    from spane_cli.engine.dispatch import Dispatcher
    from spane_cli.store.store import Store


@dataclass
class Services:
    settings: Settings
    _store: Store | None = None
    _dispatcher: Dispatcher | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def store(self) -> Store:
        """The store, opened (and migrated) on first use. ServiceUnreachable (503) when the
        database does not answer; the next request tries again."""
        with self._lock:
            if self._store is None:
                from spane_cli.engine.connections import open_store

                self._store = open_store(self.settings)
            return self._store

    def dispatcher(self) -> Dispatcher:
        """Jobs onto Redis. Redis is pinged on first use (503 when unreachable); the client
        reconnects by itself afterwards."""
        with self._lock:
            if self._dispatcher is None:
                from spane_cli.engine.connections import open_redis
                from spane_cli.engine.dispatch import Dispatcher

                self._dispatcher = Dispatcher(open_redis(self.settings.redis_url))
            return self._dispatcher

    def close(self) -> None:
        with self._lock:
            if self._store is not None:
                self._store.close()


def services(request: Request) -> Services:
    found: Services = request.app.state.services
    return found


def settings(request: Request) -> Settings:
    return services(request).settings


def store(request: Request) -> Store:
    """The store; use from a sync route or a threadpool (it may connect)."""
    return services(request).store()


def dispatcher(request: Request) -> Dispatcher:
    return services(request).dispatcher()
