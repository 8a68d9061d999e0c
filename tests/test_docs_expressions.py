"""The expression and python-node pages run: every `yaml` example of docs/expressions.md and
docs/python-nodes.md is a workflow that `spane run --local` runs to the output shown after it,
and every filter and test of the sandbox is listed in docs/expressions.md with an example that
gives what it says."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from helpers import final_document, run_spane

from spane_cli.workflow.expressions import environment, render_value

DOCS = Path(__file__).resolve().parents[1] / "docs"
PAGES = ("expressions.md", "python-nodes.md")
FENCE = re.compile(r"^```(?P<lang>\w*)\n(?P<body>.*?)^```\n", re.DOTALL | re.MULTILINE)


@dataclass(frozen=True)
class Example:
    page: str
    line: int
    workflow: str
    output: Any  # the `json` block after it; None when there is none
    has_output: bool


def blocks(page: str) -> list[tuple[str, str, int]]:
    text = (DOCS / page).read_text()
    return [
        (m["lang"], m["body"], text.count("\n", 0, m.start()) + 1) for m in FENCE.finditer(text)
    ]


def examples() -> Iterator[Example]:
    for page in PAGES:
        found = blocks(page)
        for position, (lang, body, line) in enumerate(found):
            if lang != "yaml":
                continue
            following = found[position + 1] if position + 1 < len(found) else ("", "", 0)
            has_output = following[0] == "json"
            output = json.loads(following[1]) if has_output else None
            yield Example(page, line, body, output, has_output)


def module_files(page: str) -> dict[str, str]:
    """The `python` blocks that start with `# file: PATH`: the modules the examples import."""
    files = {}
    for lang, body, _ in blocks(page):
        first, _, rest = body.partition("\n")
        if lang == "python" and first.startswith("# file: "):
            files[first.removeprefix("# file: ").strip()] = rest
    return files


EXAMPLES = list(examples())


def test_the_pages_have_examples() -> None:
    assert {example.page for example in EXAMPLES} == set(PAGES)
    assert all(example.has_output for example in EXAMPLES)


@pytest.fixture
def import_path_restored(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """`--path` changes this process's sys.path and PYTHONPATH: both come back afterwards,
    and the modules the example imported are forgotten."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delenv("PYTHONPATH", raising=False)
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        if name.split(".")[0] == "shop":
            del sys.modules[name]


@pytest.mark.parametrize("example", EXAMPLES, ids=[f"{e.page}:{e.line}" for e in EXAMPLES])
def test_the_example_runs_to_the_output_shown(
    example: Example, tmp_path: Path, import_path_restored: None
) -> None:
    library = tmp_path / "lib"
    for name, source in module_files(example.page).items():
        (library / name).parent.mkdir(parents=True, exist_ok=True)
        (library / name).write_text(source)
    library.mkdir(exist_ok=True)
    flow = tmp_path / "flow.yaml"
    flow.write_text(example.workflow)
    assert run_spane("validate", str(flow)).exit_code == 0, run_spane("validate", str(flow)).output
    result = run_spane("run", "--local", "-o", "json", "--path", str(library), str(flow))
    assert result.exit_code == 0, result.output
    assert final_document(result.stdout)["output"] == example.output


# -- the lists of filters and tests -----------------------------------------------------------

ENTRY = re.compile(
    r"^- `(?P<name>[^`(]+)[^`]*` — .*`(?P<template>\{\{(?:(?!` → ).)*\}\})` → (?P<result>.+)$"
)


def listed() -> dict[str, dict[str, tuple[str, str]]]:
    """{'Filters': {name: (template, result)}, 'Tests': {...}} from docs/expressions.md."""
    entries: dict[str, dict[str, tuple[str, str]]] = {"Filters": {}, "Tests": {}}
    section = ""
    for line in (DOCS / "expressions.md").read_text().splitlines():
        if line.startswith("## "):
            section = line[3:].strip()
        match = ENTRY.match(line)
        if match and section in entries:
            assert match["name"] not in entries[section], f"{match['name']} listed twice"
            entries[section][match["name"]] = (match["template"], match["result"])
    return entries


def test_every_filter_and_test_is_listed() -> None:
    entries = listed()
    assert set(entries["Filters"]) == set(environment().filters)
    assert set(entries["Tests"]) == set(environment().tests)


CASES = [
    (section, name, template, result)
    for section, names in listed().items()
    for name, (template, result) in names.items()
]


@pytest.mark.parametrize(
    ("section", "name", "template", "result"), CASES, ids=[f"{c[0]}:{c[1]}" for c in CASES]
)
def test_the_listed_example_gives_what_it_says(
    section: str, name: str, template: str, result: str
) -> None:
    value = render_value(template, {})
    if not (result.startswith("`") and result.endswith("`")):
        return  # described in words (random): it renders, which is all that can be said
    assert json.loads(json.dumps(value)) == json.loads(result[1:-1])
