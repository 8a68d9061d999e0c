"""How `spane logs` labels each line: `[node#attempt]`, with `item I=VALUE` for a foreach
item and `run N` for the second and later runs of one attempt (a rerun after its worker was
lost writes under another worker)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

# A long item value would push the line itself off the screen.
VALUE_WIDTH = 40

RunKey = tuple[str, int | None, int]


class LogLabels:
    def __init__(self, item_value: Callable[[str, int], Any]) -> None:
        self._item_value = item_value
        self._values: dict[tuple[str, int], str] = {}
        self._workers: dict[RunKey, list[str | None]] = {}

    def run_number(self, node_id: str, item: int | None, attempt: int, worker: str | None) -> int:
        """1 for the first worker seen writing this attempt, 2 for the next, and so on."""
        seen = self._workers.setdefault((node_id, item, attempt), [])
        if worker not in seen:
            seen.append(worker)
        return seen.index(worker) + 1

    def label(self, node_id: str, item: int | None, attempt: int, worker: str | None) -> str:
        parts = [f"{node_id}#{attempt}"]
        if item is not None:
            parts.append(f"item {item}={self._value(node_id, item)}")
        run = self.run_number(node_id, item, attempt, worker)
        if run > 1:
            parts.append(f"run {run}")
        return "[" + " ".join(parts) + "]"

    def _value(self, node_id: str, item: int) -> str:
        key = (node_id, item)
        if key not in self._values:
            value = self._item_value(node_id, item)
            text = value if isinstance(value, str) else json.dumps(value, default=str)
            self._values[key] = text if len(text) <= VALUE_WIDTH else text[: VALUE_WIDTH - 1] + "…"
        return self._values[key]
