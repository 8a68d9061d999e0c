"""Live output: the batches a running node's output adds to `node_log` while it runs, and the
oldest of them dropped when one run prints more than its share (the tail is kept).

Only `node_log` rows are written, never a node's state: a batch from a run that was taken
over (its worker looked dead) is kept under that worker's name, like its report's logs.
"""

from __future__ import annotations

from collections.abc import Sequence

from spane_cli.store import sql
from spane_cli.store.records import ClaimedNode
from spane_cli.store.tx import Tx


def append_batch(tx: Tx, claim: ClaimedNode, text: str) -> int:
    """One batch of output as a row; its id."""
    row = tx.run(
        "INSERT INTO node_log (execution_id, node_id, attempt, text, created_at, worker, item)"
        " VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
        (claim.execution_id, claim.node_id, claim.attempt, text, tx.now, claim.worker, claim.item),
    ).fetchone()
    return int(row[0])


def drop_batches(tx: Tx, dropped: Sequence[int], first_kept: int, notice: str) -> None:
    """Remove the `dropped` rows and put `notice` (how much is gone) before the first row
    kept, so that a reader of the whole log sees it where the cut is."""
    for member, values in sql.member_of(tx.database, dropped):
        tx.run(f"DELETE FROM node_log WHERE id {member}", values)
    tx.run("UPDATE node_log SET text = ? || text WHERE id = ?", (notice, first_kept))
