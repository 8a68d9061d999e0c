"""A located validation problem: what `spane validate` prints, one per line."""

from __future__ import annotations

from dataclasses import dataclass

Path = tuple[str | int, ...]


def printable(text: str) -> str:
    """`text` with control and other unprintable characters escaped (`\\r`, `\\x00`): a
    key or value from a hostile file must not split or rewrite the line it is printed on."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


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
        return printable(f"{self.file}:{self.line}:{self.column}: {self.message}")

    def as_json(self) -> dict[str, object]:
        return {
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "path": self.path,
            "message": self.message,
        }
