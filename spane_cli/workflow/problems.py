"""A located validation problem: what `spane validate` prints, one per line."""

from __future__ import annotations

from dataclasses import dataclass

Path = tuple[str | int, ...]


def format_path(path: Path) -> str:
    """`('nodes', 'a', 'needs', 0)` -> `nodes.a.needs[0]`."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


@dataclass(frozen=True)
class Problem:
    file: str
    line: int
    column: int
    path: str
    message: str

    def render(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.message}"

    def as_json(self) -> dict[str, object]:
        return {
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "path": self.path,
            "message": self.message,
        }
