"""The node worker loop: take a job from RQ, claim, run, complete, dispatch the children.

Composes RQ's queue primitives (no fork per job, no subclassing of RQ's Worker): the database
decides what runs, so a job is only a hint to look at one node attempt. A heartbeat thread
keeps this worker's row fresh so the reconciler of any worker can tell it is alive.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import peewee
from redis import Redis
from redis.exceptions import RedisError
from rq import Queue

from spane_cli.engine import metrics, reconcile, tracing
from spane_cli.engine.dispatch import TIMER_WAKE_KEY, Dispatcher, TakenJob
from spane_cli.engine.gates import Gates, Verdict, gated_run
from spane_cli.engine.live_logs import live_log_for
from spane_cli.engine.runner import run_claimed, secrets_from_environment
from spane_cli.engine.worker_settings import (
    LIFE_ENV,
    WorkerTimings,
    priority_aging_from_environment,
    retention_from_environment,
    worker_identity,
)
from spane_cli.errors import SpaneError
from spane_cli.nodes.registry import INSTANT_TYPES, preload_builtins
from spane_cli.states import ExecutionStatus, OutcomeKind
from spane_cli.store import queries
from spane_cli.store.db import write_transaction
from spane_cli.store.records import ClaimedNode, Dispatch, Report
from spane_cli.store.store import Store
from spane_cli.store.workers import beat, forget
from spane_cli.text import error_line, first_line
from spane_cli.workflow.model import Node

log = logging.getLogger("spane.worker")

# Instant nodes (see INSTANT_TYPES) claimed per transaction when the queue holds several.
CLAIM_BATCH = 8
OUTAGE_BACKOFF_MAX_SECONDS = 5.0
# How late a BLPOP timeout may come back (the server's clock ticks ten times a second), and
# how close to a due time an idle worker stops listening to Redis and waits on its own clock.
REDIS_LATENESS = 0.12
TIMER_PRECISE_SECONDS = 0.15
DEADLINE_SLACK_SECONDS = 0.05
_SERVICE_ERRORS = (RedisError, OSError, peewee.OperationalError, peewee.InterfaceError)


@dataclass
class WorkerOptions:
    queues: Sequence[str] = ("default",)
    name: str = field(default_factory=lambda: f"{socket.gethostname()}.{os.getpid()}")
    burst: bool = False
    max_jobs: int | None = None
    poll_seconds: int = 1
    handle_signals: bool = False
    timings: WorkerTimings = field(default_factory=WorkerTimings.from_environment)
    retention: float | None = field(default_factory=retention_from_environment)
    priority_aging: float = field(default_factory=priority_aging_from_environment)
    # `run --local` turns it off: a command that runs one execution fires no schedules.
    fire_schedules: bool = True


class NodeWorker:
    def __init__(
        self,
        store: Store,
        connection: Redis,
        options: WorkerOptions,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> None:
        self.store = store
        self.connection = connection
        self.options = options
        self.dispatcher = Dispatcher(connection, options.priority_aging)
        self.gates = Gates(store, connection)
        self.should_stop = should_stop
        self.queue_keys = [Queue(q, connection=connection).key for q in options.queues]
        self.secrets = secrets_from_environment()
        self.jobs_done = 0
        self._next_reconcile = 0.0
        # The earliest retry or delay due after the last timer pass, as the database said
        # when last asked (None: nothing due); asked again when `_due_unknown` is set.
        self._next_due: float | None = None
        self._due_unknown = True
        self._stop_requested = threading.Event()  # finish the running node, then exit
        self._abort_requested = threading.Event()  # stop now; the reconciler re-dispatches
        self._heartbeat_stop = threading.Event()
        supervisor = os.environ.get("SPANE_SUPERVISOR_PID")
        self._supervisor_pid = int(supervisor) if supervisor and supervisor.isdigit() else None
        self.identity = worker_identity(options.name, os.environ.get(LIFE_ENV))
        self._stopped_at: float | None = None  # monotonic time of the first stop signal
        self._signals_received: list[int] = []
        self._signals_logged = 0

    # -- signals: handlers only set flags ------------------------------------------------------

    def _on_signal(self, signum: int, _frame: object) -> None:
        self._signals_received.append(signum)  # logged by the loop, not in the handler
        if signum == signal.SIGINT or self._stop_requested.is_set():
            self._abort_requested.set()
        if self._stopped_at is None:
            self._stopped_at = time.monotonic()
        self._stop_requested.set()

    @property
    def forced(self) -> bool:
        """The worker was stopped without letting its running node finish (a second signal,
        SIGINT, or the end of the stop grace): its exit status says so."""
        return self._abort_requested.is_set()

    def _grace_over(self) -> bool:
        """A SIGTERM's grace for the running node has run out: it is dropped, not awaited."""
        if self._stopped_at is None:
            return False
        return time.monotonic() - self._stopped_at >= self.options.timings.stop_grace

    def _install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    def _log_signals(self) -> None:
        while self._signals_logged < len(self._signals_received):
            signum = self._signals_received[self._signals_logged]
            self._signals_logged += 1
            name = signal.Signals(signum).name
            if self._abort_requested.is_set():
                log.warning("received %s: stopping now; the running node runs again elsewhere",
                            name)  # fmt: skip
            else:
                log.info("received %s: finishing the running node (up to %.0f s), then stopping",
                         name, self.options.timings.stop_grace)  # fmt: skip

    def _stopping(self) -> bool:
        self._log_signals()
        if self._supervisor_pid is not None and os.getppid() != self._supervisor_pid:
            if not self._stop_requested.is_set():
                log.warning("supervisor %s is gone; stopping after the running node",
                            self._supervisor_pid)  # fmt: skip
            self._stop_requested.set()
        return self._stop_requested.is_set() or self.should_stop()

    # -- heartbeat -----------------------------------------------------------------------------

    def _heartbeat_loop(self) -> None:
        host, pid = socket.gethostname(), os.getpid()
        while not self._heartbeat_stop.wait(self.options.timings.heartbeat_every):
            try:
                beat(self.identity, host, pid, self.options.queues)
            except _SERVICE_ERRORS as exc:
                log.warning("heartbeat failed: %s", error_line(exc))
                _reset_connection(self.store)

    def _schedule_loop(self) -> None:
        store = Store(self.store.database)
        timings = self.options.timings
        while not self._heartbeat_stop.wait(timings.reconcile_every):
            try:
                reconcile.fire_schedules(
                    store, self.dispatcher, heartbeat_every=timings.heartbeat_every
                )
            except (*_SERVICE_ERRORS, peewee.DatabaseError, SpaneError) as exc:
                # The fire rolled back whole; the next tick tries again.
                log.warning("firing schedules failed: %s", error_line(exc))
                _reset_connection(store)

    # -- main loop -----------------------------------------------------------------------------

    def run(self) -> None:
        if self.options.handle_signals:
            self._install_signal_handlers()
        beat(self.identity, socket.gethostname(), os.getpid(), self.options.queues)
        heart = threading.Thread(target=self._heartbeat_loop, daemon=True, name="heartbeat")
        heart.start()
        # Schedules fire from a thread of their own: a node that runs for an hour must not
        # hold every fire of that hour back. Its own Store: the caches are not thread-safe.
        ticker = threading.Thread(target=self._schedule_loop, daemon=True, name="schedules")
        if self.options.fire_schedules:
            ticker.start()
        preload_builtins()
        log.info("worker %s serving %s", self.identity, ", ".join(self.options.queues))
        backoff = 0.5
        try:
            while not self._stopping():
                try:
                    if self._step():
                        return
                    backoff = 0.5
                except _SERVICE_ERRORS as exc:
                    log.warning("service error, retrying in %.1fs: %s", backoff, error_line(exc))
                    _reset_connection(self.store)
                    self._stop_requested.wait(backoff)
                    backoff = min(backoff * 2, OUTAGE_BACKOFF_MAX_SECONDS)
        finally:
            self._heartbeat_stop.set()
            heart.join(timeout=5)
            if ticker.is_alive():
                ticker.join(timeout=5)
            # Leave no heartbeat behind, so a node dropped by an abort is re-dispatched soon.
            with contextlib.suppress(*_SERVICE_ERRORS):
                forget(self.identity)
            log.info("worker %s stopped after %d jobs", self.identity, self.jobs_done)

    def _step(self) -> bool:
        """One job or one wait; True when the worker should exit."""
        now = time.time()
        if self._next_due is not None and now >= self._next_due:
            self._fire_timers(now)
        elif now >= self._next_reconcile and not self._due_soon(now):
            # A tick takes a while on a busy database: it waits until a timer due within
            # moments has fired.
            timings = self.options.timings
            self._next_reconcile = now + timings.reconcile_every
            reconcile.tick(
                self.store,
                self.dispatcher,
                now,
                heartbeat_ttl=timings.heartbeat_ttl,
                retention=self.options.retention,
            )
            self._due_unknown = True
        first = next(iter(self.dispatcher.take(self.queue_keys)), None)
        if first is None:
            if self.options.burst and not self._work_left():
                return True
            wait = self._idle_wait(now)
            if self._due_soon(now):
                # Redis checks blocked clients' timeouts about every 100 ms: the last stretch
                # before a due time is waited here, to the millisecond.
                self._stop_requested.wait(wait)
                return False
            first = self.dispatcher.take_blocking(self.queue_keys, wait, wake_key=TIMER_WAKE_KEY)
            if first is None:
                return False
            if first.is_wake:
                # A due time may have moved, or a priority band got jobs: look again.
                self._due_unknown = self._due_unknown or first.queue == TIMER_WAKE_KEY
                return False
        self._process(first)
        self.jobs_done += 1
        return self.options.max_jobs is not None and self.jobs_done >= self.options.max_jobs

    def _fire_timers(self, now: float) -> None:
        """Retries, delays and execution deadlines that are due, at their time rather than at
        the next tick."""
        woken = self.store.wake_due(now)
        self._enqueue(woken)
        timed_out = self.store.expire_timeouts(now)
        recorder = metrics.active()
        if recorder is not None:  # the reconciler's actions, done here on time
            recorder.count_reconciled("woken", len(woken))
            recorder.count_reconciled("timed_out", len(timed_out))
        self._due_unknown = True
        # Busy with what we just woke, we may miss the next due time: another idle worker
        # takes the watch over.
        with contextlib.suppress(RedisError):
            self.dispatcher.wake_timers()

    def _due_soon(self, now: float) -> bool:
        return self._next_due is not None and self._next_due - now <= TIMER_PRECISE_SECONDS

    def _note_timers(self, reports: Sequence[Report]) -> None:
        """A failure (its retry may wait) or a delay just recorded sets a due time: one idle
        worker (this one, when nobody else is idle) reads the next due time again."""
        if any(r.kind in (OutcomeKind.FAILED, OutcomeKind.WAIT) for r in reports):
            with contextlib.suppress(RedisError):
                self.dispatcher.wake_timers()

    def _idle_wait(self, now: float) -> float:
        """How long an idle worker blocks: its poll, cut short by the next reconciler tick
        and by the next due retry or delay (read from the database when not known)."""
        if self._due_unknown:
            self._next_due = queries.next_due(after=now)
            self._due_unknown = False
        if self._due_soon(now):
            assert self._next_due is not None
            return max(self._next_due - time.time(), 0.001)
        wake_at = min(now + self.options.poll_seconds, self._next_reconcile)
        if self._next_due is not None:
            wake_at = min(wake_at, self._next_due - REDIS_LATENESS)
        # BLPOP waits forever on 0: block for a moment at least.
        return max(wake_at - time.time(), 0.005)

    def _work_left(self) -> bool:
        """Burst mode keeps going while a node on our queues is queued or due within a minute
        (its job may be lost and only the reconciler can bring it back)."""
        return queries.work_left(self.options.queues, due_before=time.time() + 60)

    def _process(self, taken: TakenJob) -> None:
        if taken.args is None:
            return  # the hash is gone (flushed); the reconciler re-sends from the outbox
        execution_id, node_id, attempt, *rest = taken.args
        item = rest[0] if rest else None
        if item is not None:
            self._process_item(execution_id, node_id, int(attempt), int(item))
            return
        claims = self._claim(execution_id, node_id, int(attempt))
        self.jobs_done += max(0, len(claims) - 1)
        if len(claims) == 1:
            self._run(claims[0])
            return
        reports: list[tuple[ClaimedNode, Report]] = []
        for claim in claims:
            reports.append((claim, self._execute(claim)))
            if self._abort_requested.is_set():
                return  # all stay claimed by us: the reconciler re-dispatches them
        dispatches, follow = self._complete(reports, self._may_take_next())
        self._enqueue(dispatches)
        self._note_timers([report for _, report in reports])
        if follow is not None:
            self.jobs_done += 1
            self._run(follow)

    def _node_of(self, execution_id: str, node_id: str) -> Node | None:
        info = self.store.execution_info(execution_id)
        if info is None:
            return None
        return self.store.versions.get(info.version_id).workflow.nodes.get(node_id)

    def _is_instant(self, execution_id: str, node_id: str) -> bool:
        # A gated node is claimed alone: its start asks a limiter or a breaker first.
        node = self._node_of(execution_id, node_id)
        return (
            node is not None
            and node.type in INSTANT_TYPES
            and node.foreach is None
            and not node.gated
        )

    def _claim(self, execution_id: str, node_id: str, attempt: int) -> list[ClaimedNode]:
        """This node; and when it is instant, up to CLAIM_BATCH - 1 more instant nodes from the
        queue, all claimed in one transaction. Other jobs taken on the way go back to the head
        of their queue: a slow node is not held here while another worker could run it."""
        if self.store.knows_execution(execution_id):
            return self._claim_batch(execution_id, node_id, attempt)
        # A new execution's fields are read in the claim's transaction: a commit fewer per
        # execution, which many small workflows notice.
        with write_transaction(self.store.database):
            return self._claim_batch(execution_id, node_id, attempt)

    def _claim_batch(self, execution_id: str, node_id: str, attempt: int) -> list[ClaimedNode]:
        node = self._node_of(execution_id, node_id)
        if node is not None and gated_run(node, None):
            return self._claim_gated(node, execution_id, node_id, attempt)
        wanted = [(execution_id, node_id, attempt)]
        if self.options.max_jobs is None and self._is_instant(execution_id, node_id):
            handed_back: list[TakenJob] = []
            taken = [
                (job, job.dispatch())
                for job in self.dispatcher.take(self.queue_keys, CLAIM_BATCH - 1)
            ]
            self.store.caches.load_execution_infos(d.execution_id for _, d in taken if d)
            for job, dispatch in taken:
                if dispatch is None:
                    continue  # its hash was gone; the reconciler re-sends it
                if dispatch.item is None and self._is_instant(
                    dispatch.execution_id, dispatch.node_id
                ):
                    wanted.append((dispatch.execution_id, dispatch.node_id, dispatch.attempt))
                else:
                    handed_back.append(job)
            if handed_back:
                self._hand_back(handed_back)
        return self.store.claim_nodes(wanted, self.identity)

    def _claim_gated(
        self, node: Node, execution_id: str, node_id: str, attempt: int
    ) -> list[ClaimedNode]:
        """A node with a rate limit or a breaker: claimed when its gates let it start (its
        recorded start is the time they did), else handed back with the time to look again."""
        verdict = self.gates.admit(node, execution_id, node_id, attempt, None)
        if verdict.until is not None:
            self._defer(execution_id, node_id, attempt, None, verdict)
            return []
        claims = self.store.claim_nodes(
            [(execution_id, node_id, attempt)], self.identity, now=verdict.admitted_at
        )
        for claim in claims:
            claim.refused = verdict.failure
        return claims

    def _defer(
        self, execution_id: str, node_id: str, attempt: int, item: int | None, verdict: Verdict
    ) -> None:
        assert verdict.until is not None
        if self.store.defer_start(
            execution_id, node_id, attempt, item, verdict.until, verdict.reason
        ):
            # Its due time may be the next one: an idle worker reads it again.
            self._due_unknown = True
            with contextlib.suppress(RedisError):
                self.dispatcher.wake_timers()

    def _run(self, claim: ClaimedNode | None) -> None:
        """Run the node, then any child its completion handed straight to us (no Redis hop)."""
        while claim is not None:
            report = self._execute(claim)
            if self._abort_requested.is_set():
                return  # dropped on purpose: our heartbeat goes, the reconciler re-dispatches
            dispatches, claim = self._complete([(claim, report)], self._may_take_next())
            self._enqueue(dispatches)
            self._note_timers([report])
            if claim is not None:
                self.jobs_done += 1

    def _run_claimed(self, claim: ClaimedNode) -> Report:
        if claim.refused is not None:  # an open breaker: failed at once, nothing sent
            return Report(OutcomeKind.FAILED, error=claim.refused, refused=True)
        recorder, tracer = metrics.active(), tracing.active()
        if recorder is None and tracer is None:
            return self._run_node(claim)
        return self._run_observed(claim, recorder, tracer)

    def _run_node(self, claim: ClaimedNode) -> Report:
        """The node run, its output streamed to the database while it runs when its type
        streams; what was not streamed yet comes back in the report's logs."""
        live = live_log_for(self.store, claim, self.secrets.values())
        if live is None:
            return run_claimed(claim, self.secrets, self._cancel_check(claim.execution_id))
        try:
            report = run_claimed(
                claim, self.secrets, self._cancel_check(claim.execution_id), live.write
            )
        finally:
            rest = live.close()
        if rest:
            report.logs = rest + report.logs
        return report

    def _run_observed(
        self,
        claim: ClaimedNode,
        recorder: metrics.WorkerMetrics | None,
        tracer: tracing.NodeTracer | None,
    ) -> Report:
        """The run with its metrics (dispatch latency, duration) and its trace span."""
        node = claim.version.workflow.nodes[claim.node_id]
        started = time.time()
        if recorder is not None and claim.queued_at is not None:
            recorder.observe_claim(node.queue, started - claim.queued_at)
        span = tracer.start(claim, node.type) if tracer is not None else None
        try:
            report = self._run_node(claim)
        except BaseException:
            if tracer is not None and span is not None:
                tracer.end(span, "error", None)
            raise
        outcome = str(report.kind)
        if tracer is not None and span is not None:
            tracer.end(span, outcome, report.error)
        if recorder is not None:
            recorder.observe_run(
                claim.version.workflow.name, node.type, outcome, time.time() - started
            )
        return report

    def _execute(self, claim: ClaimedNode) -> Report:
        report = self._run_claimed(claim)
        self._expire_if_late(claim)
        if report.kind == OutcomeKind.FAILED and not self._abort_requested.is_set():
            first = first_line(report.error, "failed")
            log.warning(
                "node %s of %s failed (attempt %s): %s",
                claim.node_id,
                claim.execution_id,
                claim.attempt,
                first,
            )
        return report

    def _expire_if_late(self, claim: ClaimedNode) -> None:
        """A run that outlived its execution's deadline: the execution times out now, with
        the deadline's error on its nodes (this run's own report then changes nothing). No
        idle worker may have been there to keep the time."""
        now = time.time()
        # A run its time limit stopped at the deadline may end a hair before it.
        if claim.timeout_at is not None and now >= claim.timeout_at - DEADLINE_SLACK_SECONDS:
            self.store.expire_timeouts(max(now, claim.timeout_at))

    def _may_take_next(self) -> bool:
        # A child handed straight to this worker skips its queue: not while a priority band
        # of its queues holds jobs (as of the last take), which could come first.
        stop = self._stopping() or self._max_jobs_reached()
        return not stop and not self.dispatcher.bands_waiting

    def _process_item(self, execution_id: str, node_id: str, attempt: int, item: int) -> None:
        node = self._node_of(execution_id, node_id)
        verdict = Verdict()
        if node is not None and gated_run(node, item):
            verdict = self.gates.admit(node, execution_id, node_id, attempt, item)
            if verdict.until is not None:
                self._defer(execution_id, node_id, attempt, item, verdict)
                return
        claim = self.store.claim_item(
            execution_id, node_id, attempt, item, self.identity, now=verdict.admitted_at
        )
        if claim is None:
            return
        claim.refused = verdict.failure
        report = self._run_claimed(claim)
        if self._abort_requested.is_set():
            return
        self._expire_if_late(claim)
        if report.kind == OutcomeKind.FAILED:
            first = first_line(report.error, "failed")
            log.warning(
                "item %s of node %s of %s failed (attempt %s): %s",
                item, node_id, execution_id, attempt, first,
            )  # fmt: skip
        backoff = 0.5
        while True:
            try:
                self._enqueue(self.store.complete_item(claim, report))
                self._note_timers([report])
                return
            except (peewee.OperationalError, peewee.InterfaceError) as exc:
                if self._abort_requested.is_set():
                    return
                log.warning(
                    "could not record an item of %s, retrying: %s", node_id, error_line(exc)
                )
                _reset_connection(self.store)
                time.sleep(backoff)
                backoff = min(backoff * 2, OUTAGE_BACKOFF_MAX_SECONDS)

    def _max_jobs_reached(self) -> bool:
        return self.options.max_jobs is not None and self.jobs_done + 1 >= self.options.max_jobs

    def _complete(
        self, reports: list[tuple[ClaimedNode, Report]], take_next: bool
    ) -> tuple[list[Dispatch], ClaimedNode | None]:
        """Record the outcomes in one transaction, waiting out a database outage: the work is
        done, keep its result. With `take_next`, also claim one child they made ready."""
        backoff = 0.5
        while True:
            try:
                return self.store.complete_nodes(
                    reports,
                    worker=self.identity if take_next else None,
                    queues=self.options.queues,
                )
            except (peewee.OperationalError, peewee.InterfaceError) as exc:
                if self._abort_requested.is_set():
                    return [], None
                names = ", ".join(claim.node_id for claim, _ in reports)
                log.warning("could not record node %s, retrying: %s", names, error_line(exc))
                _reset_connection(self.store)
                time.sleep(backoff)
                backoff = min(backoff * 2, OUTAGE_BACKOFF_MAX_SECONDS)

    def _enqueue(self, dispatches: list[Dispatch]) -> None:
        try:
            self.dispatcher.enqueue(dispatches)
        except RedisError as exc:
            # The outbox rows stay; the reconciler sends them when Redis is back.
            log.warning("could not enqueue %d jobs: %s", len(dispatches), error_line(exc))

    def _hand_back(self, jobs: list[TakenJob]) -> None:
        try:
            self.dispatcher.hand_back(jobs)
        except RedisError as exc:
            log.warning("could not hand back %d jobs: %s", len(jobs), error_line(exc))

    def _cancel_check(self, execution_id: str) -> Callable[[], bool]:
        last = [0.0, False]
        every = self.options.timings.cancel_check_every

        def cancelled() -> bool:
            if not self._abort_requested.is_set() and self._grace_over():
                log.warning("the stop grace is over: dropping the running node")
                self._abort_requested.set()
            if self._abort_requested.is_set():
                return True
            now = time.time()
            if now - last[0] >= every:
                last[0] = now
                try:
                    status = queries.execution_status(execution_id)
                except _SERVICE_ERRORS:
                    return False
                last[1] = status in (None, ExecutionStatus.CANCELLED, ExecutionStatus.FAILED)
            return bool(last[1])

        return cancelled


def _reset_connection(store: Store) -> None:
    try:
        if not store.database.is_closed():
            store.database.close()
    except Exception:  # closing a broken connection may itself fail; a new one is opened next
        pass
