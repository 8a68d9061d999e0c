"""The store's front door: one object per process holding the database and its caches, with
one method per operation. Each method opens the transaction and hands it to the module that
owns the transition (see the map in __init__.py); nothing is decided here."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from functools import partial
from typing import Any, TypeVar

import peewee

from spane_cli.states import ExecutionStatus
from spane_cli.store import (
    breakers,
    claim,
    complete,
    create,
    deferrals,
    hooks,
    items,
    lifecycle,
    live_logs,
    pools,
    queries,
    recovery,
    reopen,
    repair,
    retention,
    schedules,
    timers,
    workers,
)
from spane_cli.store.models import database_proxy
from spane_cli.store.records import ClaimedNode, Dispatch, ExecutionInfo, Report, StaleReport
from spane_cli.store.schedules import FireOutcome, InputMaker
from spane_cli.store.tx import Caches, retry_on_conflict, transaction
from spane_cli.store.versions import VersionCache
from spane_cli.workflow.limits import BreakerSpec
from spane_cli.workflow.schedule_spec import ScheduleSpec

T = TypeVar("T")


class Store:
    def __init__(self, database: peewee.Database) -> None:
        self.database = database
        database_proxy.initialize(database)
        self.caches = Caches(database)

    def bind(self) -> None:
        """Point the tables at this store's database again: they are bound per process, and
        another store opened since may have taken them."""
        database_proxy.initialize(self.database)

    @property
    def versions(self) -> VersionCache:
        return self.caches.versions

    def _retrying(self, run: Callable[[], T]) -> T:
        """Every operation is one transaction (or a few); one PostgreSQL broke up to let
        another through (a deadlock, a serialization failure) runs again."""
        return retry_on_conflict(self.database, run)

    def close(self) -> None:
        if not self.database.is_closed():
            self.database.close()

    # -- executions --------------------------------------------------------------------------

    def create_execution(
        self,
        version_id: int,
        workflow_input: Any,
        *,
        idempotency_key: str | None = None,
        timeout: float | None = None,
        now: float | None = None,
    ) -> tuple[str, bool, list[Dispatch]]:
        """(execution id, created?, dispatches). The same idempotency key gives the same id."""
        return self._retrying(
            partial(
                create.create_execution,
                self.caches,
                version_id,
                workflow_input,
                idempotency_key=idempotency_key,
                timeout=timeout,
                now=now,
            )
        )

    def start_hook_delivery(
        self,
        workflow: str,
        version_id: int,
        workflow_input: Any,
        *,
        delivery_id: str | None,
        signature_digest: str,
        now: float | None = None,
    ) -> tuple[str, bool, list[Dispatch]]:
        """A verified webhook request: its execution and the record of the delivery, in one
        transaction (store/hooks.py)."""
        return self._retrying(
            partial(
                hooks.start_delivery,
                self.caches,
                workflow,
                version_id,
                workflow_input,
                delivery_id=delivery_id,
                signature_digest=signature_digest,
                now=now,
            )
        )

    def save_hook(self, workflow: str, salt: str, now: float | None = None) -> None:
        """Create a workflow's hook or rotate its secret (a new salt)."""
        hooks.save_hook(self.database, workflow, salt, now)

    def remove_hook(self, workflow: str) -> bool:
        return hooks.remove_hook(self.database, workflow)

    def execution_info(self, execution_id: str) -> ExecutionInfo | None:
        """The fields of an execution that never change, cached: workers read them per node."""
        return self.caches.execution_info(execution_id)

    def knows_execution(self, execution_id: str) -> bool:
        """Whether the fixed fields of this execution are cached (reading them costs a query)."""
        return execution_id in self.caches.infos

    def require_execution(self, execution_id: str) -> Any:
        return queries.require_execution(execution_id)

    # -- what workers do ---------------------------------------------------------------------

    def claim_nodes(
        self, wanted: Sequence[tuple[str, str, int]], worker: str, now: float | None = None
    ) -> list[ClaimedNode]:
        """Several (execution, node, attempt) claims in one transaction; stale ones left out."""

        def run() -> list[ClaimedNode]:
            with transaction(self.caches, now) as tx:
                return claim.claim_nodes(tx, wanted, worker)

        return self._retrying(run)

    def complete_nodes(
        self,
        reports: Sequence[tuple[ClaimedNode, Report]],
        *,
        worker: str | None = None,
        queues: Sequence[str] = (),
        now: float | None = None,
    ) -> tuple[list[Dispatch], ClaimedNode | None]:
        """Record several reports in one transaction. When `worker` is given, one child they
        made ready (on one of `queues`) is claimed for it in the same transaction. Returns the
        jobs to enqueue, and that claim."""
        claim_for = (worker, frozenset(queues)) if worker else None

        def run() -> tuple[list[Dispatch], ClaimedNode | None]:
            try:
                with transaction(self.caches, now, claim_for) as tx:
                    complete.complete_nodes(tx, reports)
            except StaleReport:
                return [], None
            return tx.dispatches, tx.next_claim

        return self._retrying(run)

    def claim_item(
        self,
        execution_id: str,
        node_id: str,
        attempt: int,
        index: int,
        worker: str,
        now: float | None = None,
    ) -> ClaimedNode | None:
        def run() -> ClaimedNode | None:
            with transaction(self.caches, now) as tx:
                return items.claim_item(tx, execution_id, node_id, attempt, index, worker)

        return self._retrying(run)

    def complete_item(
        self, claimed: ClaimedNode, report: Report, now: float | None = None
    ) -> list[Dispatch]:
        def run() -> list[Dispatch]:
            try:
                with transaction(self.caches, now) as tx:
                    complete.complete_item(tx, claimed, report)
            except StaleReport:
                return []  # a sub-workflow item reported twice: its child was rolled back
            return tx.dispatches

        return self._retrying(run)

    def defer_start(
        self,
        execution_id: str,
        node_id: str,
        attempt: int,
        item: int | None,
        until: float,
        reason: str,
        now: float | None = None,
    ) -> bool:
        """A queued node (or item) a limit does not let start yet waits until `until`
        without a job (deferrals.py); False when its job was stale."""

        def run() -> bool:
            with transaction(self.caches, now) as tx:
                return deferrals.defer(tx, execution_id, node_id, attempt, item, until, reason)

        return self._retrying(run)

    def breaker_admit(
        self,
        spec: BreakerSpec,
        execution_id: str,
        node_id: str,
        attempt: int,
        item: int | None,
        now: float | None = None,
    ) -> breakers.Admission | None:
        """Whether the host's circuit breaker lets this start through (None: it does, as
        the probe when one was due)."""
        now = time.time() if now is None else now
        probe = breakers.probe_name(execution_id, node_id, attempt, item)
        return self._retrying(partial(breakers.admit, self.caches, spec, probe, now))

    def list_breakers(self, only_open: bool = False) -> list[breakers.BreakerView]:
        return breakers.list_breakers(self.database, only_open)

    def reset_breakers(self, host: str | None, now: float | None = None) -> int:
        """Breakers closed again (every one when `host` is None); how many there were."""
        now = time.time() if now is None else now
        return self._retrying(partial(breakers.reset, self.caches, host, now))

    def append_live_log(
        self,
        claimed: ClaimedNode,
        text: str,
        dropped: Sequence[int] = (),
        first_kept: int | None = None,
        notice: str = "",
    ) -> int:
        """One batch of a running node's output; the id of its row. The `dropped` rows of the
        same run go in the same transaction, with `notice` put before the row `first_kept`
        (this batch's own row when None)."""

        def run() -> int:
            with transaction(self.caches) as tx:
                row_id = live_logs.append_batch(tx, claimed, text)
                if dropped:
                    kept = row_id if first_kept is None else first_kept
                    live_logs.drop_batches(tx, dropped, kept, notice)
                return row_id

        return self._retrying(run)

    # -- what the reconciler does ------------------------------------------------------------

    def wake_due(self, now: float | None = None) -> list[Dispatch]:
        """Delays that are over complete; retries that are due (nodes and items) are queued."""
        now = time.time() if now is None else now
        return (
            self._retrying(partial(timers.wake_due, self.caches, now))
            + self._retrying(partial(timers.wake_due_items, self.caches, now))
            + self._retrying(partial(deferrals.wake, self.caches, now))
        )

    def expire_timeouts(self, now: float | None = None) -> list[str]:
        now = time.time() if now is None else now
        return self._retrying(partial(timers.expire_timeouts, self.caches, now))

    def recover_lost(
        self, alive: Collection[str], older_than: float, now: float | None = None
    ) -> list[Dispatch]:
        """Nodes and items running on a worker not in `alive` since before `older_than`."""
        now = time.time() if now is None else now
        nodes = partial(recovery.recover_lost_nodes, self.caches, alive, older_than, now)
        found_items = partial(recovery.recover_lost_items, self.caches, alive, older_than, now)
        return self._retrying(nodes) + self._retrying(found_items)

    def repair_stalled(self, quiet_for: float = 30.0, now: float | None = None) -> list[Dispatch]:
        """Executions with nothing in flight and no node finished for `quiet_for` seconds,
        though nodes are pending: decided again from a snapshot (repair.py)."""
        now = time.time() if now is None else now
        return self._retrying(partial(repair.repair_stalled, self.caches, now - quiet_for, now))

    def sweep_pools(self, now: float | None = None) -> list[Dispatch]:
        """Pool slots and waits left by nodes that ended without a report (pools.sweep)."""
        now = time.time() if now is None else now
        return self._retrying(partial(pools.sweep, self.caches, now))

    def set_pool_size(
        self, name: str, size: int | None, now: float | None = None
    ) -> list[Dispatch]:
        """`spane pool set` (None: `spane pool rm`); the waiters it makes room for."""
        now = time.time() if now is None else now
        return self._retrying(partial(pools.set_size, self.caches, name, size, now))

    def release_worker(self, worker: str, now: float | None = None) -> list[Dispatch]:
        """Every node and item `worker` was running goes back on its queue at once, without
        using an attempt: its process is known to be dead (its supervisor saw it end)."""
        now = time.time() if now is None else now
        later = now + 1.0  # whatever it started, up to now
        nodes = partial(recovery.recover_lost_nodes, self.caches, (), later, now, worker)
        found_items = partial(recovery.recover_lost_items, self.caches, (), later, now, worker)
        released = self._retrying(nodes) + self._retrying(found_items)
        workers.forget(worker)  # that life is over: its heartbeat row would stay for ever
        return released

    def pending_dispatches(self, older_than: float, limit: int = 1000) -> list[Dispatch]:
        """Outbox rows not yet claimed, without their priority (see `with_priorities`)."""
        return queries.pending_dispatches(older_than, limit)

    def with_priorities(self, dispatches: Sequence[Dispatch]) -> list[Dispatch]:
        return self.caches.with_priorities(dispatches)

    # -- retention ---------------------------------------------------------------------------

    def gc_count(self, selection: retention.Selection) -> Counter[str]:
        return retention.count_rows(self.caches, selection)

    def gc_batch(
        self, selection: retention.Selection, limit: int = retention.BATCH_LIMIT
    ) -> Counter[str]:
        """Delete the oldest `limit` executions `selection` matches; rows deleted per table
        (nothing left: an empty count)."""
        ids = retention.candidates(self.caches, selection, limit)
        return self._retrying(partial(retention.delete_batch, self.caches, ids, time.time()))

    # -- what operators do -------------------------------------------------------------------

    def cancel(self, execution_id: str, now: float | None = None) -> bool:
        """Open -> cancelled with every unfinished node; False when it had already ended."""
        queries.require_execution(execution_id)
        return self._cancelled(execution_id, None, now)

    def _cancelled(self, execution_id: str, reason: str | None, now: float | None) -> bool:
        now = time.time() if now is None else now
        return self._retrying(
            partial(
                lifecycle.end_execution,
                self.caches,
                execution_id,
                ExecutionStatus.CANCELLED,
                reason,
                now,
            )
        )

    def set_paused(
        self, execution_id: str, paused: bool, now: float | None = None
    ) -> list[Dispatch]:
        """Pause stops new claims; resume re-dispatches what is queued."""
        queries.require_execution(execution_id)
        now = time.time() if now is None else now
        return self._retrying(partial(lifecycle.set_paused, self.caches, execution_id, paused, now))

    def retry_execution(self, execution_id: str, now: float | None = None) -> list[Dispatch]:
        return self._retrying(partial(reopen.retry_execution, self.caches, execution_id, now))

    def replay_dead_letter(self, letter_id: int, now: float | None = None) -> list[Dispatch]:
        return self._retrying(partial(reopen.replay_dead_letter, self.caches, letter_id, now))

    def purge_dead_letters(self, letter_ids: list[int] | None) -> int:
        return reopen.purge_dead_letters(letter_ids)

    # -- schedules (store/schedules.py) ------------------------------------------------------

    def save_schedule(
        self,
        spec: ScheduleSpec,
        *,
        workflow: str,
        version_id: int | None,
        origin: str,
        source_file: str | None = None,
        replace: bool = False,
        now: float | None = None,
    ) -> bool:
        """Create (or with `replace`, update) a schedule; True when it is new."""
        now = time.time() if now is None else now
        return self._retrying(
            partial(
                schedules.save_schedule,
                self.caches,
                spec,
                workflow=workflow,
                version_id=version_id,
                origin=origin,
                source_file=source_file,
                now=now,
                replace=replace,
            )
        )

    def remove_schedule(self, name: str, now: float | None = None) -> None:
        now = time.time() if now is None else now
        self._retrying(partial(schedules.remove_schedule, self.caches, name, now))

    def set_schedule_paused(self, name: str, paused: bool, now: float | None = None) -> bool:
        now = time.time() if now is None else now
        return self._retrying(
            partial(schedules.set_schedule_paused, self.caches, name, paused, now)
        )

    def due_schedule_work(self, now: float) -> list[tuple[str, int | None]]:
        """(schedule, backfill id or None) that a tick has to look at; one query."""
        return schedules.due_work(self.database, now)

    def fire_schedule(
        self, name: str, now: float, make_input: InputMaker, heartbeat_slack: float
    ) -> FireOutcome:
        """Every due fire time of the schedule, decided and applied in one transaction."""

        def run() -> FireOutcome:
            try:
                return schedules.fire_schedule(self.caches, name, now, make_input, heartbeat_slack)
            except StaleReport:
                return FireOutcome()

        return self._retrying(run)

    def fire_schedule_now(
        self, name: str, make_input: InputMaker, now: float | None = None
    ) -> tuple[str, list[Dispatch]]:
        now = time.time() if now is None else now
        return self._retrying(partial(schedules.fire_now, self.caches, name, now, make_input))

    def start_backfill(
        self,
        name: str,
        from_time: float,
        to_time: float,
        max_parallel: int | None = None,
        now: float | None = None,
    ) -> tuple[int, int]:
        now = time.time() if now is None else now
        return self._retrying(
            partial(
                schedules.start_backfill,
                self.caches,
                name,
                from_time,
                to_time,
                max_parallel,
                now,
            )
        )

    def advance_backfill(self, backfill_id: int, now: float, make_input: InputMaker) -> FireOutcome:
        def run() -> FireOutcome:
            try:
                return schedules.advance_backfill(self.caches, backfill_id, now, make_input)
            except StaleReport:
                return FireOutcome()

        return self._retrying(run)

    def cancel_replaced(self, execution_id: str, reason: str, now: float | None = None) -> bool:
        """A schedule's previous execution cancelled for the fire that replaces it."""
        return self._cancelled(execution_id, reason, now)
