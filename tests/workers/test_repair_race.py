"""The stalled-execution repair (store/repair.py) racing live workers: called without pause
while real workers run a workflow, it never finds a stall that is not there, so no node is
queued twice or settled behind a worker's back."""

from __future__ import annotations

import threading
from collections import Counter

from cluster_support import Cluster, flow, poll


def test_repair_called_nonstop_beside_live_workers_changes_nothing(cluster: Cluster) -> None:
    log = cluster.tmp_path / "ran.log"
    chain = "".join(
        f"  c{i}: {{type: shell, needs: [{f'c{i - 1}' if i else 'start'}],"
        f" config: {{run: 'echo c{i} >> {log}'}}}}\n"
        for i in range(8)
    )
    fan = "".join(f"  f{i}: {{type: noop, needs: [start]}}\n" for i in range(20))
    join = "  join: {type: noop, needs: [c7, " + ", ".join(f"f{i}" for i in range(20)) + "]}\n"
    execution_id = cluster.submit(
        flow("repair-race", "  start: {type: noop}\n" + chain + fan + join)
    )

    done = threading.Event()
    repaired: list[int] = []

    def hammer() -> None:
        while not done.is_set():
            repaired.append(len(cluster.store.repair_stalled(quiet_for=0.0)))

    racer = threading.Thread(target=hammer)
    racer.start()
    try:
        cluster.start_worker("--concurrency", "2")
        poll(lambda: cluster.status(execution_id) == "succeeded", 60, "the run to end")
    finally:
        done.set()
        racer.join(timeout=30)
    assert len(repaired) > 10  # it really ran beside the workers
    assert sum(repaired) == 0
    assert [e for e in cluster.events(execution_id) if (e["data"] or {}).get("repaired")] == []
    assert Counter(log.read_text().split()) == Counter(f"c{i}" for i in range(8))


def test_workers_under_a_retention_setting_delete_old_finished_runs(cluster: Cluster) -> None:
    done = cluster.submit(flow("retained", "  a: {type: noop}\n"))
    cluster.start_worker(env={"SPANE_RETENTION": "1s"})
    poll(lambda: cluster.query("SELECT id FROM execution WHERE id = %s", (done,)) == [],
         20, "the finished run to be deleted")  # fmt: skip
    assert cluster.query("SELECT count(*) FROM node_run WHERE execution_id = %s", (done,)) == [(0,)]
