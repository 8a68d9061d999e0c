"""The database: the single source of truth for executions, nodes, events and dead letters.

A map of the package, one concept per module. Every state change runs in one transaction
opened by `tx.transaction` and applied by exactly one module below; `store.py` is the front
door that opens it. Decisions (which children run, what an execution's result is, when a
retry is due) are not made here: they come from `spane_cli.scheduler`, and the store applies
them in SQL.

- `records.py` — the values handed in and out: `Dispatch` (a job to enqueue), `ClaimedNode`
  (what a worker owns), `Report` (what it says happened), `ExecutionInfo`, and the limits.
- `tx.py` — the transaction object (`Tx`: outbox rows, events, sub-workflow endings, the
  child a worker takes at once), the per-process caches, and **the lock order**: execution
  row first (`Tx.lock_executions`), then its node rows, then its item rows.
- `create.py` — a new execution: its rows, its entry nodes queued.
- `claim.py` — queued -> running for one worker, the parents' outputs it reads, and the
  ready child a completing worker takes in the same transaction.
- `complete.py` — a worker's report recorded: success, skip, retry or failure (with its dead
  letter), delay, sub-workflow start, foreach start; sub-workflow endings reported upward.
- `cascade.py` — after a node ends: the scheduler's `cascade` run over the node rows
  (count-downs, parent states, settling skips), ready children queued, the remaining-node
  count lowered.
- `fail_fast.py` — a workflow's `fail_fast`: the main graph's nodes that have not started are
  skipped in the transaction of the first failure.
- `finish.py` — an execution's end once its last node is terminal: result, output, error.
- `subworkflows.py` — starting a child execution (for a node, or for one foreach item) with
  its declared inputs defaulted and checked, and what its end means for whoever waits.
- `items.py` — foreach items: start, claim, record, wait (a delay, a child execution),
  retry, loss; the node's report after the last item.
- `timers.py` — what time makes due: finished delays, due retries (of nodes and items),
  execution deadlines (which fail the nodes they stop), outbox rows to send again.
- `recovery.py` — nodes and items of workers that stopped beating, or whose supervisor saw
  them die.
- `pools.py` — concurrency pools, mutexes and `max_active`: a slot taken with the claim,
  freed with the node's end or loss (or the execution's end), waiters parked without a job
  and woken oldest first; the sweep of what a path without a report left.
- `pool_views.py` — pools, holders and waiters as `spane pool list` and `spane get` show them.
- `repair.py` — an execution left with pending nodes and nothing in flight: the scheduler's
  `plan` of its snapshot, applied.
- `lifecycle.py` — cancel, pause, resume, and the forced end of a timed-out execution.
- `reopen.py` — `spane retry` and `spane dlq replay`: failed work back on a queue.
- `schedules.py` — schedules saved, paused, removed; a schedule's due fire times decided
  (`spane_cli.fires`) and applied with their executions in one transaction; manual runs and
  backfills.
- `hooks.py` — webhooks of workflows (a salt per hook, never the secret) and the deliveries
  that started executions, recorded in the execution's transaction.
- `queries.py` — the read side the CLI and the engine use; nothing there writes.
- `views.py` — executions, events and dead letters as the JSON shapes of the SPEC.
- `schedule_views.py` — schedules, their last fires and backfills, late schedules: the reads
  and shapes of `spane schedule` and `spane health`.
- `workers.py` — worker heartbeats.
- `versions.py` — registered workflow versions and the cache of their built models.
- `models.py`, `migrations.py`, `db.py`, `sql.py`, `events.py` — tables, schema changes,
  connections, portable hot-path SQL, event type names.
"""
