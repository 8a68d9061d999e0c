"""A running node's output in the database while it runs, so `spane logs -f` shows its lines
within a second of their being printed.

A node type that streams (shell, python) hands each piece of output to `LiveLog.write`. One flusher
thread per worker process writes what came in every FLUSH_EVERY_SECONDS, or at once past
FLUSH_BYTES. Only whole lines go out while the node runs: a secret cut in two by a batch
boundary would pass the mask in two halves (a line left open for a whole period goes out,
less the length of the longest secret). What is left when the node ends goes into its report
and is stored with the completion, so nothing is written twice; a worker killed with -9 loses
at most the batch it had not written yet. One run keeps at most KEEP_BYTES in the database: the
oldest batches go, and a notice before the first one kept says how much was cut.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Collection

import peewee

from spane_cli.nodes.common import cut_notice
from spane_cli.store.records import ClaimedNode
from spane_cli.store.store import Store
from spane_cli.text import error_line, mask_secrets, storable

FLUSH_EVERY_SECONDS = 0.5
FLUSH_BYTES = 64 * 1024
KEEP_BYTES = 256 * 1024  # per run of a node (or of a foreach item)
# What may wait for the database: a burst faster than a period is written whole, and an
# outage costs the oldest of it.
PENDING_BYTES = 4 * KEEP_BYTES
# Node types whose output is streamed; the others hand theirs back with their result.
STREAMING_TYPES = frozenset({"shell", "python"})

log = logging.getLogger("spane.worker")
_SERVICE_ERRORS = (OSError, peewee.OperationalError, peewee.InterfaceError)


class LiveLog:
    """The output of one claimed run, on its way to `node_log`."""

    def __init__(self, store: Store, claim: ClaimedNode, secrets: Collection[str]) -> None:
        self._store = store
        self._claim = claim
        self._secrets = [s for s in secrets if s]
        # Kept back from a line still open, so no secret is cut in two at its end.
        self._hold_back = max((len(s) for s in self._secrets), default=1) - 1
        self._buffer_lock = threading.Lock()  # the pending text, shared with the pipe readers
        self._write_lock = threading.Lock()  # one write at a time, in order; close waits for it
        self._pending: list[str] = []
        self._pending_size = 0
        self._pending_cut = 0  # bytes cut from what waited, not yet said
        self._open_line_waited = False  # the text after the last newline waited one period
        self._rows: deque[tuple[int, int]] = deque()  # (row id, bytes) of the kept batches
        self._kept_bytes = 0
        self._cut_bytes = 0
        self._closed = False
        self._registered = False

    def write(self, text: str) -> None:
        """Called by whoever reads the node's output, from any thread."""
        if not text:
            return
        with self._buffer_lock:
            if self._closed:
                return  # a process that escaped the group kept writing after the node ended
            self._pending.append(text)
            self._pending_size += len(text)
            if self._pending_size > PENDING_BYTES:
                self._keep_pending_tail()
            full = self._pending_size >= FLUSH_BYTES
            if not self._registered:  # under the lock: never added after close removed it
                self._registered = True
                _flusher.add(self)
        if full:
            _flusher.wake()

    def flush(self) -> None:
        """Write the whole lines that came in (called by the flusher thread), in batches of
        at most about FLUSH_BYTES, so that the oldest can go one by one."""
        with self._write_lock:
            if self._closed:
                return
            batches = _batches(self._take_ready())
            for index, batch in enumerate(batches):
                if not self._append(batch):
                    # Kept for the next period (or the report): not lost to a hiccup.
                    with self._buffer_lock:
                        self._pending[:0] = batches[index:]
                        self._pending_size += sum(len(b) for b in batches[index:])
                    return

    def close(self) -> str:
        """Stop streaming; what was not written yet, masked, for the node's report."""
        with self._write_lock, self._buffer_lock:
            self._closed = True
            rest = self._with_pending_cut("".join(self._pending))
            self._pending.clear()
            self._pending_size = 0
        if self._registered:
            _flusher.remove(self)
        return storable(mask_secrets(rest, self._secrets)) if rest else ""

    @property
    def cut_bytes(self) -> int:
        return self._cut_bytes

    def _keep_pending_tail(self) -> None:
        """While the database does not answer, what waits is bounded as what is stored is:
        the tail is kept, from a line's start, behind a notice of what was cut there."""
        text = "".join(self._pending)
        start = len(text) - PENDING_BYTES
        line_start = text.find("\n", start) + 1
        if 0 < line_start < len(text):
            start = line_start
        self._pending_cut += len(text[:start].encode("utf-8", errors="replace"))
        self._pending = [text[start:]]
        self._pending_size = len(text) - start

    def _with_pending_cut(self, text: str) -> str:
        if not self._pending_cut or not text:
            return text
        notice, self._pending_cut = cut_notice(self._pending_cut), 0
        return notice + text

    def _take_ready(self) -> str:
        with self._buffer_lock:
            text = "".join(self._pending)
            end = text.rfind("\n") + 1
            open_line = len(text) - end
            if open_line and (self._open_line_waited or open_line >= FLUSH_BYTES):
                end = max(end, len(text) - self._hold_back)
            self._pending = [text[end:]] if end < len(text) else []
            self._pending_size = len(text) - end
            self._open_line_waited = self._pending_size > 0
            return self._with_pending_cut(text[:end])

    def _append(self, raw: str) -> bool:
        text = storable(mask_secrets(raw, self._secrets))
        size = len(text.encode("utf-8", errors="replace"))
        # The oldest batches that no longer fit beside this one.
        total, gone, cut = self._kept_bytes + size, 0, self._cut_bytes
        while total > KEEP_BYTES and gone < len(self._rows):
            total -= self._rows[gone][1]
            cut += self._rows[gone][1]
            gone += 1
        dropped = [self._rows[index][0] for index in range(gone)]
        first_kept = self._rows[gone][0] if gone < len(self._rows) else None
        try:
            row_id = self._store.append_live_log(
                self._claim, text, dropped, first_kept, cut_notice(cut)
            )
        except _SERVICE_ERRORS as exc:
            log.warning("could not write the output of %s: %s", self._claim.node_id,
                        error_line(exc))  # fmt: skip
            with contextlib.suppress(Exception):
                self._store.database.close()
            return False
        for _ in range(gone):
            self._rows.popleft()
        self._rows.append((row_id, size))
        self._kept_bytes, self._cut_bytes = total, cut
        return True


def _batches(text: str) -> list[str]:
    """`text` in pieces of at most FLUSH_BYTES characters, each ending a line where it can."""
    pieces: list[str] = []
    while len(text) > FLUSH_BYTES:
        end = text.rfind("\n", 0, FLUSH_BYTES) + 1 or FLUSH_BYTES
        pieces.append(text[:end])
        text = text[end:]
    if text:
        pieces.append(text)
    return pieces


class _Flusher:
    """The one thread per process that writes every open LiveLog on its period."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[int, LiveLog] = {}
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, live: LiveLog) -> None:
        with self._lock:
            self._open[id(live)] = live
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, daemon=True, name="live-logs")
                self._thread.start()

    def remove(self, live: LiveLog) -> None:
        with self._lock:
            self._open.pop(id(live), None)

    def wake(self) -> None:
        self._wake.set()

    def _loop(self) -> None:
        while True:
            started = time.monotonic()
            with self._lock:
                current = list(self._open.values())
            for live in current:
                try:
                    live.flush()
                except Exception as exc:  # one bad batch must not stop the others' streaming
                    log.warning("live output: %s", error_line(exc))
            self._wake.wait(max(FLUSH_EVERY_SECONDS - (time.monotonic() - started), 0.0))
            self._wake.clear()


_flusher = _Flusher()


def live_log_for(store: Store, claim: ClaimedNode, secrets: Collection[str]) -> LiveLog | None:
    """A LiveLog when the claimed node's type streams its output, else None."""
    node = claim.version.workflow.nodes[claim.node_id]
    return LiveLog(store, claim, secrets) if node.type in STREAMING_TYPES else None
