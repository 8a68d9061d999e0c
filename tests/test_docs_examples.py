"""Every ```yaml example of the user documentation runs with `spane run --local` and ends as
the comment above it says (`<!-- expect: {...} -->`), so the docs cannot drift from what spane
does. Fragments that are not whole workflows are fenced as ```text."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [
    ROOT / "docs" / "trigger-rules.md",
    ROOT / "docs" / "exit-handlers-and-retries.md",
    ROOT / "docs" / "pools.md",
    ROOT / "docs" / "limits.md",
    ROOT / "docs" / "priorities.md",
]
EXAMPLE = re.compile(r"(?:<!-- expect: (?P<expect>.*?) -->\n)?```yaml\n(?P<body>.*?)```", re.S)


def examples() -> list[tuple[str, dict[str, Any] | None, str]]:
    found = []
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        for index, match in enumerate(EXAMPLE.finditer(text)):
            expect = json.loads(match["expect"]) if match["expect"] else None
            found.append((f"{doc.stem}-{index}", expect, match["body"]))
    return found


EXAMPLES = examples()


def test_each_document_has_examples() -> None:
    for doc in DOCS:
        assert any(name.startswith(doc.stem) for name, _, _ in EXAMPLES), doc


@pytest.mark.parametrize(
    ("expect", "body"), [e[1:] for e in EXAMPLES], ids=[e[0] for e in EXAMPLES]
)
def test_documented_example_runs_as_documented(
    tmp_path: Path, sqlite_url: str, expect: dict[str, Any] | None, body: str
) -> None:
    assert expect is not None, "a ```yaml example needs an <!-- expect: {...} --> line above it"
    flow = tmp_path / "example.yaml"
    flow.write_text(body, encoding="utf-8")
    command = [sys.executable, "-m", "spane_cli", "run", "--local", "-o", "json", str(flow)]
    result = subprocess.run(
        [*command, "--db", sqlite_url],
        capture_output=True,
        text=True,
        timeout=90,
        env=dict(os.environ),
        cwd=ROOT,
    )
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stdout.strip(), result.stderr
    execution = json.loads(result.stdout)  # the one document: the execution as it ended
    assert execution["status"] == expect["status"], execution
    assert result.returncode == (0 if expect["status"] == "succeeded" else 1)
    nodes = execution["nodes"]
    assert {n: nodes[n]["status"] for n in expect["nodes"]} == expect["nodes"]
    attempts = expect.get("attempts", {})
    assert {n: nodes[n]["attempts"] for n in attempts} == attempts
