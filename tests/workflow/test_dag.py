"""Cycles in `needs`: any cycle found is a real one, and one is found whenever there is one."""

from __future__ import annotations

from itertools import pairwise

from hypothesis import given
from hypothesis import strategies as st

from spane_cli.workflow.dag import find_cycle

NAMES = ["a", "b", "c", "d", "e", "f"]
graphs = st.dictionaries(
    st.sampled_from(NAMES), st.lists(st.sampled_from([*NAMES, "unknown"]), max_size=3)
)


def _acyclic(needs: dict[str, list[str]]) -> bool:
    """Kahn's algorithm over the known parents, independent of the code under test."""
    pending = {node: {p for p in parents if p in needs} for node, parents in needs.items()}
    while pending:
        ready = [node for node, parents in pending.items() if not parents]
        if not ready:
            return False
        for node in ready:
            del pending[node]
        for parents in pending.values():
            parents.difference_update(ready)
    return True


@given(graphs)
def test_a_cycle_is_reported_exactly_when_there_is_one(needs: dict[str, list[str]]) -> None:
    cycle = find_cycle(needs)
    assert (cycle is None) == _acyclic(needs)
    if cycle is not None:
        assert cycle[0] == cycle[-1] and len(cycle) >= 2
        for parent, child in pairwise(cycle):
            assert parent in needs[child]  # each node is needed by the next one


def test_cycle_is_in_dependency_order() -> None:
    needs = {"start": [], "a": ["start", "c"], "b": ["a"], "c": ["b"]}
    assert find_cycle(needs) == ["a", "b", "c", "a"]
    assert find_cycle({"a": ["a"]}) == ["a", "a"]


def test_unknown_parents_are_no_cycle() -> None:
    assert find_cycle({"a": ["missing"], "b": ["a", "missing"]}) is None
