"""Graph rules over `needs`: unknown parents, cycles, topological order."""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def find_cycle(needs: Mapping[str, Sequence[str]]) -> list[str] | None:
    """One cycle as [a, b, ..., a] in dependency order, or None. Unknown parents are ignored."""
    white, grey, black = 0, 1, 2
    color = dict.fromkeys(needs, white)
    for start in needs:
        if color[start] != white:
            continue
        stack: list[tuple[str, int]] = [(start, 0)]
        path: list[str] = [start]
        color[start] = grey
        while stack:
            node, index = stack[-1]
            parents = [p for p in needs[node] if p in needs]
            if index < len(parents):
                stack[-1] = (node, index + 1)
                parent = parents[index]
                if color[parent] == grey:
                    cycle = [*path[path.index(parent) :], parent]
                    return list(reversed(cycle))
                if color[parent] == white:
                    color[parent] = grey
                    stack.append((parent, 0))
                    path.append(parent)
            else:
                color[node] = black
                stack.pop()
                path.pop()
    return None


def topological_order(needs: Mapping[str, Sequence[str]]) -> list[str]:
    """Parents before children, ties in the mapping's own order. Assumes no cycle."""
    order: list[str] = []
    placed: set[str] = set()
    remaining = list(needs)
    while remaining:
        progressed = False
        for node in list(remaining):
            if all(p in placed or p not in needs for p in needs[node]):
                order.append(node)
                placed.add(node)
                remaining.remove(node)
                progressed = True
        if not progressed:
            raise ValueError("graph has a cycle")
    return order


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
