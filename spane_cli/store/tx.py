"""The transaction every state change runs in, and the per-process caches it reads through.

`transaction(caches)` opens one write transaction and yields a `Tx`: the transitions in the
sibling modules take a `Tx` and never open their own. A `Tx` collects what the transaction
decided — jobs to enqueue once it commits (`dispatches`, each with its outbox row written in
the transaction), events (written just before the commit, in the order they were added),
sub-workflow executions that ended and must report to their parent node, and the one child a
worker may take at once (`next_claim`).

Lock order (PostgreSQL; SQLite takes one database-wide write lock per transaction, so there
the order cannot matter). Every transaction that changes a node and its execution takes:

1. the execution row, first, with `lock_executions` (`SELECT ... FOR UPDATE`; several
   executions deepest first — a sub-workflow before its parent — then in id order);
2. then that execution's `node_run` rows, through the guarded UPDATEs of the transition;
3. then its `node_item` rows;
4. pool rows last (store/pools.py): a claim locks its pool after its node row, and slots freed
   in a transaction update their pools just before it commits, in name order.

One exception, on purpose: a claim in an execution that is already running takes no
execution lock (it reads the deadline in its own UPDATE's RETURNING). It moves node rows
out of `queued` only, and the only transaction that waits for such a row while holding an
execution lock is a cancel, which waits for the claim to commit and then cancels the
claimed node; the claim itself never waits for a lock a cancel holds. Claims would
otherwise queue behind every completion of their execution (a 10k fan-out ran 35% slower).

A sub-workflow that ends reports to its parent node in the same transaction: the parent
execution is locked after the child's. No transaction that starts from a parent takes a
child's rows in the same transaction (cancel and timeout commit the parent first, then end the
children one transaction each), so that arrow never points the other way.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import cachetools
import peewee

from spane_cli.store import sql
from spane_cli.store.db import write_transaction
from spane_cli.store.records import ClaimedNode, Dispatch, EventRow, ExecutionInfo
from spane_cli.store.versions import LoadedVersion, VersionCache

T = TypeVar("T")
# Called with the events of each committed transaction (the worker's metrics); empty unless
# something asked, so a transaction pays one look at an empty list.
EVENT_OBSERVERS: list[Callable[[Caches, list[EventRow]], None]] = []
_INFO_COLUMNS = (
    "id, version_id, workflow, input, depth, parent_id, parent_node_id, schedule, fire_time"
)


class Caches:
    """What a process keeps between transactions: built workflow versions, the fixed fields
    of executions it has seen, and which of them it has seen running. All of it is either
    immutable in the database or only an optimization, so it never needs invalidating."""

    def __init__(self, database: peewee.Database) -> None:
        self.database = database
        self.versions = VersionCache()
        self.infos: cachetools.LRUCache[str, ExecutionInfo] = cachetools.LRUCache(4096)
        # Executions known to have left 'pending': their claims skip the start UPDATE.
        self.seen_running: cachetools.LRUCache[str, bool] = cachetools.LRUCache(10_000)

    def load_execution_infos(self, execution_ids: Iterable[str]) -> None:
        """Cache the fixed fields of several executions with one query (a worker taking a
        batch of jobs from different executions would otherwise commit once per execution)."""
        wanted = sorted({e for e in execution_ids if e not in self.infos})
        if not wanted:
            return
        rows = sql.run(
            self.database,
            f"SELECT {_INFO_COLUMNS} FROM execution WHERE id IN ({sql.placeholders(len(wanted))})",
            wanted,
        ).fetchall()
        for row in rows:
            self.infos[row[0]] = ExecutionInfo(
                id=row[0],
                version_id=int(row[1]),
                workflow=row[2],
                input=sql.loads(row[3]),
                depth=int(row[4]),
                parent_id=row[5],
                parent_node_id=row[6],
                schedule=(row[7], float(row[8])) if row[7] is not None else None,
            )

    def with_priorities(self, dispatches: Sequence[Dispatch]) -> list[Dispatch]:
        """Dispatches read back from rows (the outbox, pool waiters), which keep no priority,
        with their node's: a version never changes, so it is the priority they were sent with."""
        self.load_execution_infos(d.execution_id for d in dispatches)
        prioritized = []
        for dispatch in dispatches:
            info = self.infos.get(dispatch.execution_id)
            nodes = None if info is None else self.versions.get(info.version_id).workflow.nodes
            node = None if nodes is None else nodes.get(dispatch.node_id)
            if node is not None and node.priority != dispatch.priority:
                dispatch = replace(dispatch, priority=node.priority)
            prioritized.append(dispatch)
        return prioritized

    def execution_info(self, execution_id: str) -> ExecutionInfo | None:
        info = self.infos.get(execution_id)
        if info is None:
            self.load_execution_infos([execution_id])
            info = self.infos.get(execution_id)
        return info


@dataclass(frozen=True)
class EndedChild:
    """A sub-workflow execution that ended in this transaction; its parent node learns it."""

    execution_id: str
    parent_id: str
    parent_node_id: str
    status: str
    output: Any
    error: str | None


@dataclass
class Tx:
    caches: Caches
    now: float
    claim_for: tuple[str, frozenset[str]] | None = None  # (worker, its queues)
    dispatches: list[Dispatch] = field(default_factory=list)
    events: list[EventRow] = field(default_factory=list)
    ended_children: list[EndedChild] = field(default_factory=list)
    next_claim: ClaimedNode | None = None
    started: list[str] = field(default_factory=list)  # executions this transaction started
    # The deadline (`timeout_at`) of each execution locked, read with its lock.
    deadlines: dict[str, float | None] = field(default_factory=dict)
    # Pool slots freed (pool -> how many): their pool rows are updated last, just before the
    # commit, so that no node or execution row is locked after a pool row.
    freed_slots: dict[str, int] = field(default_factory=dict)
    before_commit: list[Callable[[], None]] = field(default_factory=list)

    @property
    def database(self) -> peewee.Database:
        return self.caches.database

    def run(self, statement: str, params: Sequence[Any] = ()) -> Any:
        return sql.run(self.caches.database, statement, params)

    def info(self, execution_id: str) -> ExecutionInfo | None:
        return self.caches.execution_info(execution_id)

    def version(self, version_id: int) -> LoadedVersion:
        return self.caches.versions.get(version_id)

    def lock_executions(self, execution_ids: Iterable[str]) -> None:
        """Step 1 of the lock order: the execution rows before any node row, deepest first
        (a sub-workflow before its parent), then by id. Their deadlines are read with the
        lock (SQLite's write transaction already excludes every other writer, so there it is
        a plain read)."""
        self._read_executions(execution_ids, lock=True)

    def _read_executions(self, execution_ids: Iterable[str], *, lock: bool) -> None:
        wanted = {e for e in execution_ids if e not in self.deadlines}
        if not wanted:
            return
        postgres = isinstance(self.database, peewee.PostgresqlDatabase)
        lock_clause = " FOR UPDATE" if lock and postgres else ""
        depths = {e: info.depth if (info := self.caches.infos.get(e)) else 0 for e in wanted}
        for depth in sorted(set(depths.values()), reverse=True):
            level = sorted(e for e in wanted if depths[e] == depth)
            for member, values in sql.member_of(self.database, level):
                for execution_id, timeout_at in self.run(
                    f"SELECT id, timeout_at FROM execution WHERE id {member}"
                    f" ORDER BY id{lock_clause}",
                    values,
                ).fetchall():
                    self.deadlines[execution_id] = timeout_at
        for execution_id in wanted:
            self.deadlines.setdefault(execution_id, None)  # gone: nothing of it is claimed

    def event(
        self,
        execution_id: str,
        node_id: str | None,
        event_type: str,
        data: dict[str, Any] | None = None,
    ) -> None:
        self.events.append((execution_id, node_id, event_type, data))

    def enqueue(self, dispatches: Sequence[Dispatch]) -> None:
        """Outbox rows now, jobs once committed: a crash in between loses no dispatch."""
        if not dispatches:
            return
        sql.insert_rows(
            self.database,
            "outbox",
            ("execution_id", "node_id", "attempt", "queue", "item", "created_at"),
            [(d.execution_id, d.node_id, d.attempt, d.queue, d.item, self.now) for d in dispatches],
        )
        self.dispatches.extend(dispatches)

    def flush_events(self) -> None:
        if self.events:
            sql.insert_events(self.database, self.events, self.now)
            self.events.clear()


# SQLSTATEs of a transaction PostgreSQL aborted to let another one through: running it again
# is the documented answer.
_CONFLICT_CODES = frozenset({"40001", "40P01"})  # serialization_failure, deadlock_detected
CONFLICT_RETRIES = 5


def is_conflict(exc: BaseException) -> bool:
    """Whether `exc` is a serialization failure or a deadlock the server broke up."""
    cause = exc.__cause__ or exc.__context__
    return getattr(cause, "pgcode", None) in _CONFLICT_CODES or (
        getattr(exc, "pgcode", None) in _CONFLICT_CODES
    )


def retry_on_conflict(database: peewee.Database, run: Callable[[], T]) -> T:
    """`run()` (which opens its own transaction), again after a conflict, up to a few times.
    Inside a caller's transaction nothing is retried: the caller's work rolled back too."""
    for attempt in range(CONFLICT_RETRIES):
        try:
            return run()
        except peewee.DatabaseError as exc:
            if not is_conflict(exc) or database.transaction_depth() > 0:
                raise
            if attempt == CONFLICT_RETRIES - 1:
                raise
            time.sleep(random.uniform(0.005, 0.05) * (attempt + 1))
    raise AssertionError("unreachable")


@contextmanager
def transaction(
    caches: Caches,
    now: float | None = None,
    claim_for: tuple[str, frozenset[str]] | None = None,
) -> Iterator[Tx]:
    """One write transaction; its events are written when the body returns without error."""
    tx = Tx(caches, time.time() if now is None else now, claim_for)
    written: list[EventRow] = []
    with write_transaction(caches.database):
        yield tx
        for step in tx.before_commit:
            step()
        if EVENT_OBSERVERS:
            written = list(tx.events)
        tx.flush_events()
    # Only once committed, not when this was a savepoint in a caller's transaction.
    if caches.database.transaction_depth() == 0:
        for execution_id in tx.started:
            caches.seen_running[execution_id] = True
        for observe in EVENT_OBSERVERS:
            observe(caches, written)
