"""The function RQ jobs name. Workers read the job's arguments and run the node themselves;
this exists so that a job is also meaningful to plain RQ tooling (`rq info`)."""

from __future__ import annotations


def run_node(execution_id: str, node_id: str, attempt: int) -> None:
    raise RuntimeError(
        "spane jobs are run by `spane worker`, not by `rq worker` "
        f"(execution {execution_id}, node {node_id}, attempt {attempt})"
    )
