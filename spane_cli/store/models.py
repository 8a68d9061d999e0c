"""Peewee tables. Times are UTC epoch seconds (float) so both backends order them alike."""

from __future__ import annotations

import json
from typing import Any

import peewee

database_proxy = peewee.DatabaseProxy()


class JSONField(peewee.TextField):
    """JSON kept as text: identical on SQLite and PostgreSQL."""

    def db_value(self, value: Any) -> str | None:
        return None if value is None else json.dumps(value, separators=(",", ":"), default=str)

    def python_value(self, value: Any) -> Any:
        return None if value is None else json.loads(value)


class BaseModel(peewee.Model):
    class Meta:
        database = database_proxy
        legacy_table_names = False


class SchemaVersion(BaseModel):
    version = peewee.IntegerField(primary_key=True)
    applied_at = peewee.DoubleField()


class WorkflowVersion(BaseModel):
    id: int  # peewee's implicit primary key, declared for type checkers
    name = peewee.CharField(max_length=64, index=True)
    number = peewee.IntegerField()  # 1, 2, ... per workflow name, in registration order
    content_hash = peewee.CharField(max_length=64)
    # {"workflow": <the file's data>, "refs": {"sub/x.yaml": <workflow_version id>}}
    source = JSONField()
    created_at = peewee.DoubleField()

    class Meta:
        indexes = ((("name", "content_hash"), True), (("name", "number"), True))


class Execution(BaseModel):
    version_id: int  # the foreign key's raw column, declared for type checkers
    id = peewee.CharField(primary_key=True, max_length=36)
    version = peewee.ForeignKeyField(WorkflowVersion, backref="executions", on_delete="CASCADE")
    workflow = peewee.CharField(max_length=64, index=True)
    status = peewee.CharField(max_length=16, index=True)
    input = JSONField(null=True)
    output = JSONField(null=True)
    error = peewee.TextField(null=True)
    parent_id = peewee.CharField(max_length=36, null=True, index=True)
    parent_node_id = peewee.CharField(max_length=128, null=True)
    depth = peewee.IntegerField(default=0)
    idempotency_key = peewee.CharField(max_length=255, null=True, unique=True)
    remaining_nodes = peewee.IntegerField()  # not yet terminal; 0 finishes the execution
    timeout_at = peewee.DoubleField(null=True)
    created_at = peewee.DoubleField(index=True)
    started_at = peewee.DoubleField(null=True)
    finished_at = peewee.DoubleField(null=True)
    # The schedule and fire time that made it, for a scheduled execution: one execution per
    # fire time, whichever workers fire it (the unique index).
    schedule = peewee.CharField(max_length=128, null=True)
    fire_time = peewee.DoubleField(null=True)

    class Meta:
        indexes = ((("schedule", "fire_time"), True),)


class NodeRun(BaseModel):
    execution_id: str  # the foreign key's raw column, declared for type checkers
    # No index of its own: the unique (execution, node_id) index serves lookups by execution.
    execution = peewee.ForeignKeyField(Execution, backref="nodes", on_delete="CASCADE", index=False)
    node_id = peewee.CharField(max_length=128)
    status = peewee.CharField(max_length=16)
    attempt = peewee.IntegerField(default=0)  # the current attempt, 0 before the first
    # Attempts used before the last replay/retry: a reopened node gets a fresh retry budget
    # while attempt numbers keep growing, so jobs of old attempts stay stale.
    attempt_offset = peewee.IntegerField(default=0)
    lost_count = peewee.IntegerField(default=0)  # consecutive attempts lost with their worker
    waiting_on = peewee.IntegerField()  # parents not yet terminal
    queue = peewee.CharField(max_length=64, default="default")
    output = JSONField(null=True)
    error = peewee.TextField(null=True)
    items_total = peewee.IntegerField(null=True)  # foreach only: how many items there are
    items_done = peewee.IntegerField(default=0)
    items_failed = peewee.IntegerField(default=0)
    chosen = JSONField(null=True)  # branch: the children it chose
    child_execution_id = peewee.CharField(max_length=36, null=True)
    worker = peewee.CharField(max_length=128, null=True)
    due_at = peewee.DoubleField(null=True)  # retrying/waiting: when to act again
    queued_at = peewee.DoubleField(null=True)
    started_at = peewee.DoubleField(null=True)
    finished_at = peewee.DoubleField(null=True)

    class Meta:
        # `status` is deliberately in no index: status changes then stay HOT updates on
        # PostgreSQL (no index churn), which keeps big fan-outs linear. `due_at` is set only
        # while a node is waiting or retrying.
        indexes = (
            (("execution", "node_id"), True),
            (("due_at",), False),
        )


class NodeItem(BaseModel):
    """One item of a foreach node: claimed, run, retried and completed on its own."""

    execution_id = peewee.CharField(max_length=36)
    node_id = peewee.CharField(max_length=128)
    item_index = peewee.IntegerField()
    status = peewee.CharField(max_length=16)
    attempt = peewee.IntegerField(default=0)
    lost_count = peewee.IntegerField(default=0)
    value = JSONField(null=True)  # the item itself (`item` in templates)
    output = JSONField(null=True)
    error = peewee.TextField(null=True)
    worker = peewee.CharField(max_length=128, null=True)
    # A `workflow` item: the sub-workflow execution it waits for.
    child_execution_id = peewee.CharField(max_length=36, null=True)
    due_at = peewee.DoubleField(null=True)  # retrying/waiting (a delay item): when to act again
    queued_at = peewee.DoubleField(null=True)
    started_at = peewee.DoubleField(null=True)
    finished_at = peewee.DoubleField(null=True)

    class Meta:
        indexes = ((("execution_id", "node_id", "item_index"), True), (("due_at",), False))


class Event(BaseModel):
    id = peewee.BigAutoField()
    execution_id = peewee.CharField(max_length=36)
    node_id = peewee.CharField(max_length=128, null=True)
    type = peewee.CharField(max_length=32)
    data = JSONField(null=True)
    created_at = peewee.DoubleField()

    class Meta:
        indexes = ((("execution_id", "id"), False),)


class NodeLog(BaseModel):
    id = peewee.BigAutoField()
    execution_id = peewee.CharField(max_length=36)
    node_id = peewee.CharField(max_length=128)
    attempt = peewee.IntegerField()
    text = peewee.TextField()
    created_at = peewee.DoubleField()
    item = peewee.IntegerField(null=True)  # a foreach item's index
    # The worker life that wrote it: a rerun of the same attempt after its worker was lost
    # writes under another one, so `spane logs` can tell the two runs apart.
    worker = peewee.CharField(max_length=128, null=True)

    class Meta:
        indexes = ((("execution_id", "node_id", "id"), False),)


class DeadLetter(BaseModel):
    id = peewee.AutoField()
    execution_id = peewee.CharField(max_length=36, index=True)
    workflow = peewee.CharField(max_length=64, index=True)
    node_id = peewee.CharField(max_length=128)
    error = peewee.TextField(null=True)
    attempts = peewee.IntegerField()
    input = JSONField(null=True)
    created_at = peewee.DoubleField(index=True)
    replayed_at = peewee.DoubleField(null=True)


class Outbox(BaseModel):
    """Dispatch intent, written with the state change; deleted when a worker claims the node."""

    id = peewee.BigAutoField()
    execution_id = peewee.CharField(max_length=36)
    node_id = peewee.CharField(max_length=128)
    attempt = peewee.IntegerField()
    queue = peewee.CharField(max_length=64)
    item = peewee.IntegerField(null=True)  # a foreach item's index
    created_at = peewee.DoubleField(index=True)

    class Meta:
        indexes = ((("execution_id", "node_id"), False),)


class WorkerHeartbeat(BaseModel):
    name = peewee.CharField(primary_key=True, max_length=128)
    host = peewee.CharField(max_length=255)
    pid = peewee.IntegerField()
    queues = JSONField()
    started_at = peewee.DoubleField()
    last_seen = peewee.DoubleField(index=True)


class Schedule(BaseModel):
    """A workflow that runs by itself: when (`spec`, see workflow/schedule_spec.py), what
    (a registered version, or the newest version of `workflow` when `version_id` is null),
    and the next fire time no worker has dealt with yet."""

    name = peewee.CharField(primary_key=True, max_length=128)
    workflow = peewee.CharField(max_length=64)
    version_id = peewee.IntegerField(null=True)
    origin = peewee.CharField(max_length=16)  # "file": `schedule:` in the file; "cli": add
    source_file = peewee.TextField(null=True)
    spec = JSONField()
    paused = peewee.BooleanField(default=False)
    next_fire_at = peewee.DoubleField(null=True, index=True)  # null: never fires again
    last_execution_id = peewee.CharField(max_length=36, null=True)  # of a regular fire
    created_at = peewee.DoubleField()
    updated_at = peewee.DoubleField()


class ScheduleFire(BaseModel):
    """What was done with one fire time (or a run of missed ones): ran, skipped because of
    overlap, missed, failed. The schedule's own event history; the newest few are kept."""

    id = peewee.BigAutoField()
    schedule = peewee.CharField(max_length=128)
    fire_time = peewee.DoubleField()
    decision = peewee.CharField(max_length=32)
    origin = peewee.CharField(max_length=16)  # "schedule", "manual" or "backfill"
    execution_id = peewee.CharField(max_length=36, null=True)
    detail = JSONField(null=True)  # reason; for a run of missed fires: count, last
    created_at = peewee.DoubleField()

    class Meta:
        indexes = ((("schedule", "id"), False),)


class ScheduleBackfill(BaseModel):
    """Every fire time of a schedule in [from, to], `max_parallel` executions open at a
    time, fired by the workers' ticks like the schedule itself."""

    id = peewee.AutoField()
    schedule = peewee.CharField(max_length=128, index=True)
    from_time = peewee.DoubleField()
    to_time = peewee.DoubleField()
    next_after = peewee.DoubleField()  # fire times after this one are still to run
    max_parallel = peewee.IntegerField()
    running = JSONField()  # ids of its executions that may still be open
    created_at = peewee.DoubleField()
    finished_at = peewee.DoubleField(null=True, index=True)


class Pool(BaseModel):
    """A concurrency pool. `held` counts its `pool_slot` rows and changes only with this row
    locked, so two claimers can never both take its last slot."""

    name = peewee.CharField(primary_key=True, max_length=128)  # workflow:NAME for max_active
    size = peewee.IntegerField(null=True)  # `spane pool set`; None: the workflows' declaration
    declared = peewee.IntegerField(null=True)  # the size the last claimer's workflow declares
    held = peewee.IntegerField(default=0)


class CircuitBreaker(BaseModel):
    """The state of one host's circuit breaker, shared by every worker (store/breakers.py).
    In the database rather than Redis: a Redis flush must not close a breaker that protects
    a failing host, and its transitions are written with the node ends that cause them."""

    host = peewee.CharField(primary_key=True, max_length=260)
    state = peewee.CharField(max_length=16, default="closed")  # closed, open, half_open
    failures = JSONField(null=True)  # times of the recent failures, within the window
    opened_at = peewee.DoubleField(null=True)
    open_until = peewee.DoubleField(null=True)
    # The one run allowed while half open: "execution/node/attempt/item" (item -1: none).
    probe = peewee.CharField(max_length=400, null=True)
    probe_at = peewee.DoubleField(null=True)
    updated_at = peewee.DoubleField()

    class Meta:
        table_name = "circuit_breaker"


class PoolSlot(BaseModel):
    """One slot taken, by a running node (item -1) or foreach item."""

    pool = peewee.CharField(max_length=128)
    execution_id = peewee.CharField(max_length=36)
    node_id = peewee.CharField(max_length=128)
    item = peewee.IntegerField()
    worker = peewee.CharField(max_length=128, null=True)
    acquired_at = peewee.DoubleField()

    class Meta:
        primary_key = peewee.CompositeKey("execution_id", "node_id", "item")
        indexes = ((("pool",), False),)


class PoolWaiter(BaseModel):
    """A queued node (or item) that found its pool full: it holds no worker and has no job
    until a freed slot wakes it (`woken`, its slot then kept for it), oldest first."""

    id = peewee.BigAutoField()
    pool = peewee.CharField(max_length=128)
    execution_id = peewee.CharField(max_length=36)
    node_id = peewee.CharField(max_length=128)
    item = peewee.IntegerField()
    attempt = peewee.IntegerField()
    queue = peewee.CharField(max_length=64)
    since = peewee.DoubleField()
    woken = peewee.BooleanField(default=False)

    class Meta:
        indexes = (
            (("execution_id", "node_id", "item"), True),
            (("pool", "since"), False),
        )


class ApiToken(BaseModel):
    """A bearer token of `spane serve`. Only a salted hash of its secret is kept; `key` is
    the public part of the token that finds the row without comparing every hash."""

    id: int  # peewee's implicit primary key, declared for type checkers
    name = peewee.CharField(max_length=64)  # unique among the tokens not revoked (migration 7)
    key = peewee.CharField(max_length=32, unique=True)
    scope = peewee.CharField(max_length=16)  # read, run or admin
    salt = peewee.CharField(max_length=64)
    secret_hash = peewee.CharField(max_length=128)
    created_at = peewee.DoubleField()
    expires_at = peewee.DoubleField(null=True)
    revoked_at = peewee.DoubleField(null=True)
    last_used_at = peewee.DoubleField(null=True)


class Hook(BaseModel):
    """A workflow's webhook. Its secret is never stored: it is derived from `salt` under the
    server's key (engine/hook_secrets.py), so this row alone cannot sign a request. A new
    `spane hook create` replaces the salt, which rotates the secret."""

    workflow = peewee.CharField(primary_key=True, max_length=64)
    salt = peewee.CharField(max_length=64)
    created_at = peewee.DoubleField()


class HookDelivery(BaseModel):
    """A webhook request that started an execution. The sender's delivery id makes a
    redelivery return the same execution; the digest of the signature tells a replay (the
    same signed body under another delivery id) from a new delivery."""

    id = peewee.BigAutoField()
    workflow = peewee.CharField(max_length=64)
    delivery_id = peewee.CharField(max_length=128, null=True)
    signature_digest = peewee.CharField(max_length=64)
    execution_id = peewee.CharField(max_length=36)
    received_at = peewee.DoubleField(index=True)

    class Meta:
        indexes = (
            (("workflow", "signature_digest"), True),
            (("workflow", "delivery_id"), True),
        )


ALL_TABLES: tuple[type[BaseModel], ...] = (
    SchemaVersion,
    WorkflowVersion,
    Execution,
    NodeRun,
    NodeItem,
    Event,
    NodeLog,
    DeadLetter,
    Outbox,
    WorkerHeartbeat,
    Schedule,
    ScheduleFire,
    ScheduleBackfill,
    Pool,
    PoolSlot,
    PoolWaiter,
    CircuitBreaker,
    ApiToken,
    Hook,
    HookDelivery,
)
