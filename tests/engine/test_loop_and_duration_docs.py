"""Every ```yaml example of docs/loops-and-subworkflows.md and docs/durations.md runs with
`spane run --local --wait` and ends as the page says.

Each example starts with `# file: NAME`; all examples of a page are saved side by side (a
parent finds the child it names), then each one is run, with the `-i` values of its
`# run:` line, expecting exit 0 or the code of its `# expect: exit N` line."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from helpers import run_spane

DOCS = Path(__file__).resolve().parents[2] / "docs"
PAGES = ("loops-and-subworkflows.md", "durations.md")
_BLOCK = re.compile(r"^```yaml\n(.*?)^```", re.MULTILINE | re.DOTALL)


def examples(page: str) -> list[tuple[str, str]]:
    """(file name, text) of each yaml example of the page."""
    found = []
    for text in _BLOCK.findall((DOCS / page).read_text()):
        first = text.splitlines()[0]
        assert first.startswith("# file: "), f"{page}: an example without '# file:': {first}"
        found.append((first.removeprefix("# file: ").strip(), text))
    return found


def header(text: str, key: str) -> str | None:
    for line in text.splitlines():
        if not line.startswith("#"):
            return None
        if line.startswith(f"# {key}:"):
            return line.split(":", 1)[1].strip()
    return None


CASES = [(page, name) for page in PAGES for name, _ in examples(page)]


@pytest.mark.parametrize(("page", "name"), CASES, ids=[f"{p}:{n}" for p, n in CASES])
def test_the_example_runs_as_documented(page: str, name: str, tmp_path: Path) -> None:
    for file_name, text in examples(page):
        (tmp_path / file_name).write_text(text)
    text = (tmp_path / name).read_text()
    arguments = shlex.split(header(text, "run") or "")
    expected = header(text, "expect") or "exit 0"
    result = run_spane("run", "--local", "--wait", "-q", str(tmp_path / name), *arguments)
    assert f"exit {result.exit_code}" == expected, result.output
    assert "Traceback" not in result.output


def test_every_page_has_examples() -> None:
    assert all(examples(page) for page in PAGES)
