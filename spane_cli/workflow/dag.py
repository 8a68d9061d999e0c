"""Graph rules over `needs`: cycles and descendants."""

from __future__ import annotations

import graphlib
from collections.abc import Mapping, Sequence


def find_cycle(needs: Mapping[str, Sequence[str]]) -> list[str] | None:
    """One cycle as [a, b, ..., a] in dependency order, or None. Unknown parents are ignored."""
    known = {node: [p for p in parents if p in needs] for node, parents in needs.items()}
    try:
        graphlib.TopologicalSorter(known).prepare()
    except graphlib.CycleError as exc:
        # graphlib lists each node before the one that needs it, first and last the same.
        return list(exc.args[1])
    return None


def descendants(needs: Mapping[str, Sequence[str]], node_id: str) -> set[str]:
    children: dict[str, list[str]] = {n: [] for n in needs}
    for child, parents in needs.items():
        for parent in parents:
            children.setdefault(parent, []).append(child)
    seen: set[str] = set()
    frontier = [node_id]
    while frontier:
        for child in children.get(frontier.pop(), []):
            if child not in seen:
                seen.add(child)
                frontier.append(child)
    return seen
