"""Safe YAML loading that remembers where every key and value came from.

PyYAML's composer gives nodes with marks; we build plain JSON-like values from them ourselves
so that we can record a line:column for every mapping key and value, report duplicate keys,
refuse Python and unknown tags, and stop alias bombs by counting what we build.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from spane_cli.workflow.problems import Path, Problem, format_path

# libyaml's composer gives the same nodes and marks, many times faster, where it is built in.
_COMPOSER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

MAX_FILE_BYTES = 2 * 1024 * 1024
MAX_VALUES = 100_000  # values built after alias expansion; a billion-laughs file hits this fast
MAX_DEPTH = 64

_STANDARD_TAGS = {
    "tag:yaml.org,2002:str",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
    "tag:yaml.org,2002:seq",
    "tag:yaml.org,2002:map",
    "tag:yaml.org,2002:timestamp",
    "tag:yaml.org,2002:merge",
}


@dataclass
class Locations:
    """1-based (line, column) of every value and every mapping key, by path."""

    values: dict[Path, tuple[int, int]] = field(default_factory=dict)
    keys: dict[Path, tuple[int, int]] = field(default_factory=dict)

    def of(self, path: Path, *, key: bool = False) -> tuple[int, int]:
        """The closest known location: the exact path, else its nearest ancestor."""
        table = self.keys if key else self.values
        probe = tuple(path)
        while True:
            if probe in table:
                return table[probe]
            if probe in self.values:
                return self.values[probe]
            if not probe:
                return (1, 1)
            probe = probe[:-1]


@dataclass
class LoadedDocument:
    file: str
    data: Any
    locations: Locations
    text: str
    # Problems that still left usable data (duplicate keys, unsupported tags): validation goes
    # on and reports them together with everything else.
    problems: list[Problem] = field(default_factory=list)


class LoadFailed(Exception):
    """Raised when a file cannot be turned into data at all; holds the located problems."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__(problems[0].render())
        self.problems = problems


class _TooBig(Exception):
    pass


def _problem(file: str, line: int, column: int, path: Path, message: str) -> Problem:
    return Problem(file, line, column, format_path(path), message)


def read_text(file: str) -> str:
    """Read a workflow file as UTF-8, turning every OS-level failure into a located problem."""
    if os.path.isdir(file):
        raise LoadFailed([_problem(file, 1, 1, (), "is a directory, not a workflow file")])
    try:
        with open(file, "rb") as handle:
            raw = handle.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise LoadFailed([_problem(file, 1, 1, (), "no such file")]) from None
    except OSError as exc:
        raise LoadFailed([_problem(file, 1, 1, (), f"cannot read: {exc.strerror}")]) from None
    if len(raw) > MAX_FILE_BYTES:
        raise LoadFailed(
            [_problem(file, 1, 1, (), f"file is larger than {MAX_FILE_BYTES // 1024} KiB")]
        )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = raw[: exc.start]
        line = before.count(b"\n") + 1
        column = len(before) - (before.rfind(b"\n") + 1) + 1
        message = f"not UTF-8: byte 0x{raw[exc.start]:02x} cannot be decoded"
        raise LoadFailed([_problem(file, line, column, (), message)]) from None


def load_document(file: str, text: str | None = None) -> LoadedDocument:
    """Parse one YAML document with locations; raise LoadFailed with every problem found."""
    if text is None:
        text = read_text(file)
    if not text.strip() or all(
        not line.strip() or line.lstrip().startswith("#") for line in text.splitlines()
    ):
        raise LoadFailed(
            [_problem(file, 1, 1, (), "empty file: a workflow needs version, name and nodes")]
        )
    try:
        root = yaml.compose(text, Loader=_COMPOSER)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        context = exc.context_mark
        reason = exc.problem or "invalid YAML"
        unclosed = mark is not None and context is not None and mark.index >= len(text.rstrip())
        if unclosed:
            mark = context  # "got <stream end>": point at what was left open, not past the end
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        at_tab = mark is not None and text[mark.index : mark.index + 1] == "\t"
        if at_tab or "\\t" in reason or "'\\t'" in str(exc):
            reason = "tab character: YAML indentation must use spaces"
        elif "another document" in reason:
            reason = "a workflow file holds one YAML document; found a second '---'"
        elif unclosed and exc.context:
            what = re.sub(r"^while (parsing|scanning) an? ", "", exc.context)
            reason = f"{what} is never closed: {reason}"
        elif exc.context and context is not None and context.line + 1 != line:
            reason += f" ({exc.context} that starts at line {context.line + 1})"
        raise LoadFailed(
            [_problem(file, line, column, (), f"YAML syntax error: {reason}")]
        ) from None
    except yaml.reader.ReaderError as exc:
        before = text[: exc.position]
        line, column = before.count("\n") + 1, len(before) - (before.rfind("\n") + 1) + 1
        char = exc.character if isinstance(exc.character, int) else ord(exc.character)
        message = f"YAML syntax error: control character U+{char:04X} is not allowed"
        raise LoadFailed([_problem(file, line, column, (), message)]) from None
    except yaml.YAMLError as exc:
        message = f"YAML error: {exc}".replace("\n", " ")
        raise LoadFailed([_problem(file, 1, 1, (), message)]) from None
    if root is None:
        raise LoadFailed([_problem(file, 1, 1, (), "empty file")])
    builder = _Builder(file)
    try:
        data = builder.build(root, (), 0)
    except _TooBig as exc:
        raise LoadFailed([*builder.problems, _problem(file, 1, 1, (), str(exc))]) from None
    return LoadedDocument(file, data, builder.locations, text, list(builder.problems))


class _Builder:
    def __init__(self, file: str) -> None:
        self.file = file
        self.locations = Locations()
        self.problems: list[Problem] = []
        self.count = 0
        self._scalars = yaml.SafeLoader("")

    def build(self, node: yaml.Node, path: Path, depth: int) -> Any:
        self.count += 1
        if self.count > MAX_VALUES:
            raise _TooBig(f"document expands to more than {MAX_VALUES} values (YAML alias bomb?)")
        if depth > MAX_DEPTH:
            raise _TooBig(f"document is nested deeper than {MAX_DEPTH} levels")
        where = (node.start_mark.line + 1, node.start_mark.column + 1)
        self.locations.values.setdefault(path, where)
        if node.tag not in _STANDARD_TAGS:
            self.problems.append(
                _problem(self.file, *where, path, f"unsupported YAML tag {node.tag!r}")
            )
            return None
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path, depth)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i), depth + 1) for i, item in enumerate(node.value)]
        return self._scalar(node)

    def _scalar(self, node: yaml.Node) -> Any:
        value = self._scalars.construct_object(node, deep=True)
        if isinstance(value, dt.datetime | dt.date):
            return str(node.value)  # keep timestamps as written; JSON has no date type
        return value

    def _mapping(self, node: yaml.MappingNode, path: Path, depth: int) -> dict[str, Any]:
        result: dict[str, Any] = {}
        merged: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key_where = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            if key_node.tag == "tag:yaml.org,2002:merge":
                source = self.build(value_node, path, depth + 1)
                sources = source if isinstance(source, list) else [source]
                for item in sources:
                    if isinstance(item, dict):
                        for k, v in item.items():
                            merged.setdefault(k, v)
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                self.problems.append(
                    _problem(self.file, *key_where, path, "mapping keys must be plain strings")
                )
                continue
            key = self._scalar(key_node)
            if key is None or isinstance(key, bool | float):
                key = str(key_node.value)
            key = str(key)
            child = (*path, key)
            if key in result:
                first = self.locations.keys.get(child, (0, 0))
                self.problems.append(
                    _problem(
                        self.file,
                        *key_where,
                        child,
                        f"duplicate key {key!r} (first defined at line {first[0]})",
                    )
                )
                continue
            self.locations.keys[child] = key_where
            result[key] = self.build(value_node, child, depth + 1)
        for k, v in merged.items():
            result.setdefault(k, v)
        return result
