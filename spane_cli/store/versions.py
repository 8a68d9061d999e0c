"""Workflow versions: what `spane run` registers, and what workers build the model from."""

from __future__ import annotations

import hashlib
import json
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import peewee

from spane_cli.store.db import write_transaction
from spane_cli.store.models import WorkflowVersion
from spane_cli.workflow.model import Workflow, build_workflow


@dataclass(frozen=True)
class LoadedVersion:
    id: int
    number: int
    workflow: Workflow
    refs: dict[str, int]  # sub-workflow reference as written -> version id
    children: dict[str, tuple[str, ...]]  # node id -> child node ids, computed once


def content_hash(source: dict[str, Any]) -> str:
    canonical = json.dumps(source, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def register_version(
    database: peewee.Database, name: str, data: dict[str, Any], refs: dict[str, int]
) -> WorkflowVersion:
    """The version row for this exact content, created when new. Safe under concurrency."""
    source = {"workflow": data, "refs": refs}
    digest = content_hash(source)
    for _ in range(5):
        existing = WorkflowVersion.get_or_none(
            (WorkflowVersion.name == name) & (WorkflowVersion.content_hash == digest)
        )
        if existing is not None:
            return existing
        try:
            with write_transaction(database):
                latest = (
                    WorkflowVersion.select(peewee.fn.MAX(WorkflowVersion.number))
                    .where(WorkflowVersion.name == name)
                    .scalar()
                )
                return WorkflowVersion.create(
                    name=name,
                    number=int(latest or 0) + 1,
                    content_hash=digest,
                    source=source,
                    created_at=time.time(),
                )
        except peewee.IntegrityError:
            continue  # another submitter registered it (or took the number) first
    raise RuntimeError(f"could not register workflow {name!r}: too much contention")


def latest_version_id(name: str) -> int | None:
    """The id of the newest registered version of workflow `name`, or None."""
    latest = (
        WorkflowVersion.select(WorkflowVersion.id)
        .where(WorkflowVersion.name == name)
        .order_by(WorkflowVersion.number.desc())
        .first()
    )
    return None if latest is None else int(latest.id)


class VersionCache:
    """Built workflow models by version id; versions never change, so entries never go stale.
    Bounded by versions and by nodes (about 200 bytes each): a worker that meets many big
    workflows keeps the recent ones, not all of them."""

    def __init__(self, capacity: int = 256, max_nodes: int = 100_000) -> None:
        self._entries: OrderedDict[int, LoadedVersion] = OrderedDict()
        self._capacity = capacity
        self._max_nodes = max_nodes
        self._nodes = 0

    def __contains__(self, version_id: int) -> bool:
        return version_id in self._entries

    def get(self, version_id: int) -> LoadedVersion:
        cached = self._entries.get(version_id)
        if cached is not None:
            self._entries.move_to_end(version_id)
            return cached
        row = WorkflowVersion.get_by_id(version_id)
        workflow = build_workflow(row.source["workflow"])
        children: dict[str, list[str]] = {node_id: [] for node_id in workflow.nodes}
        for node in workflow.nodes.values():
            for parent in node.needs:
                children[parent].append(node.id)
        loaded = LoadedVersion(
            id=row.id,
            number=row.number,
            workflow=workflow,
            refs=dict(row.source.get("refs") or {}),
            children={k: tuple(v) for k, v in children.items()},
        )
        self._entries[version_id] = loaded
        self._nodes += len(workflow.nodes)
        # The newest entry always stays, however big: it is the one being worked on.
        while len(self._entries) > 1 and (
            len(self._entries) > self._capacity or self._nodes > self._max_nodes
        ):
            _, evicted = self._entries.popitem(last=False)
            self._nodes -= len(evicted.workflow.nodes)
        return loaded
