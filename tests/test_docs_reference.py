"""The language reference runs as it reads: every ```yaml example of docs/README.md,
docs/workflow-reference.md, docs/node-types.md and docs/failures.md runs with
`spane run --local` and ends as the `<!-- expect: {...} -->` line above it says (the
convention of tests/test_docs_examples.py, plus an optional `output`, the execution's).

A block whose first line is `# file: PATH` is a file the examples use (a module for a python
node, a child workflow), and so is a block after a `<!-- file: PATH -->` line (data that
cannot hold a comment, such as JSON a server serves): every such block of a page is written
beside the example, which runs with `--path` on that directory. `http://127.0.0.1:8000` in an
example is the page's `python3 -m http.server 8000`: the test serves the same directory on a
port of its own and puts that port in instead.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from test_docs_examples import EXAMPLE

ROOT = Path(__file__).resolve().parents[1]
PAGES = ("README.md", "workflow-reference.md", "node-types.md", "failures.md")
FILE_BLOCK = re.compile(
    r"^(?:```\w*\n# file: (?P<path>\S+)\n|<!-- file: (?P<data>\S+) -->\n```\w*\n)"
    r"(?P<body>.*?)^```\n",
    re.S | re.M,
)
SERVER = "http://127.0.0.1:8000"


def page_text(page: str) -> str:
    return (ROOT / "docs" / page).read_text(encoding="utf-8")


def examples() -> list[tuple[str, str, dict[str, Any] | None, str]]:
    found = []
    for page in PAGES:
        for match in EXAMPLE.finditer(page_text(page)):
            if match["body"].startswith("# file: "):
                continue  # a file the examples use, not an example
            expect = json.loads(match["expect"]) if match["expect"] else None
            name = re.search(r"^name: (\S+)", match["body"], re.M)
            found.append((page, f"{page}:{name[1] if name else '?'}", expect, match["body"]))
    return found


EXAMPLES = examples()


def test_each_page_but_the_index_has_examples() -> None:
    with_examples = {page for page, *_ in EXAMPLES}
    assert with_examples >= set(PAGES) - {"README.md"}


def test_every_node_type_has_an_example() -> None:
    from spane_cli.workflow.node_configs import BUILTIN_CONFIG_SCHEMAS

    used = {
        kind
        for page, _, _, body in EXAMPLES
        if page == "node-types.md"
        for kind in re.findall(r"type: (\w+)", body)
    }
    assert set(BUILTIN_CONFIG_SCHEMAS) <= used


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    """`python3 -m http.server` on the example's directory, on a free port."""
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *args: None  # type: ignore[method-assign]
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(
    ("page", "expect", "body"), [(e[0], e[2], e[3]) for e in EXAMPLES], ids=[e[1] for e in EXAMPLES]
)
def test_the_reference_example_runs_as_documented(
    tmp_path: Path,
    sqlite_url: str,
    served: str,
    page: str,
    expect: dict[str, Any] | None,
    body: str,
) -> None:
    assert expect is not None, "a ```yaml example needs an <!-- expect: {...} --> line above it"
    for match in FILE_BLOCK.finditer(page_text(page)):
        target = tmp_path / (match["path"] or match["data"])
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(match["body"].replace(SERVER, served), encoding="utf-8")
    flow = tmp_path / "example.yaml"
    flow.write_text(body.replace(SERVER, served), encoding="utf-8")
    command = [sys.executable, "-m", "spane_cli", "run", "--local", "-o", "json"]
    result = subprocess.run(
        [*command, "--path", str(tmp_path), "--db", sqlite_url, str(flow)],
        capture_output=True,
        text=True,
        timeout=90,
        env=dict(os.environ),
        cwd=tmp_path,
    )
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stdout.strip(), result.stderr
    execution = json.loads(result.stdout)
    assert execution["status"] == expect["status"], execution
    assert result.returncode == (0 if expect["status"] == "succeeded" else 1)
    nodes = execution["nodes"]
    assert {n: nodes[n]["status"] for n in expect["nodes"]} == expect["nodes"], nodes
    attempts = expect.get("attempts", {})
    assert {n: nodes[n]["attempts"] for n in attempts} == attempts
    if "output" in expect:
        assert execution["output"] == expect["output"]
    if "error" in expect:
        assert execution["error"] == expect["error"]


def test_the_workflow_man_page_renders_and_spane_1_points_to_it() -> None:
    page = ROOT / "man" / "spane-workflow.5"
    assert "\\fBspane-workflow\\fR(5)" in (ROOT / "man" / "spane.1").read_text()
    groff = shutil.which("groff")
    if groff is None:
        pytest.skip("groff is not installed")
    result = subprocess.run(
        [groff, "-man", "-Tutf8", "-ww", str(page)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and not result.stderr, result.stderr
    text = re.sub(r".\x08", "", result.stdout)  # overstrikes of bold and underline
    for section in ("NODE TYPES", "EXPRESSION SCOPE", "EXAMPLES"):
        assert section in text
    assert "config.function" in text and "retry.when" in text


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to dashes."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def test_the_index_links_every_page() -> None:
    linked = set(re.findall(r"\]\(([\w-]+\.md)\)", page_text("README.md")))
    pages = {p.name for p in (ROOT / "docs").glob("*.md")} - {"README.md"}
    assert linked == pages


@pytest.mark.parametrize("page", sorted(p.name for p in (ROOT / "docs").glob("*.md")))
def test_every_link_between_the_pages_resolves(page: str) -> None:
    for target, anchor in re.findall(r"\]\(([\w./-]*\.md)?(?:#([\w-]+))?\)", page_text(page)):
        path = (ROOT / "docs" / (target or page)).resolve()
        assert path.is_file(), (page, target)
        if anchor:
            headings = re.findall(r"^#+ (.+)$", path.read_text(encoding="utf-8"), re.M)
            assert anchor in {slug(h) for h in headings}, (page, target, anchor)


def listed_statuses(header: str) -> list[str]:
    rows = re.findall(rf"^\| {header} \|.*?\n((?:\|.*\n)+)", page_text("failures.md"), re.M)
    assert rows, header
    return re.findall(r"^\| `(\w+)` \|", rows[0], re.M)


def test_failures_lists_every_status() -> None:
    from spane_cli.states import ExecutionStatus, NodeStatus

    assert sorted(listed_statuses("node status")) == sorted(str(s) for s in NodeStatus)
    assert sorted(listed_statuses("execution status")) == sorted(str(s) for s in ExecutionStatus)


def test_the_scope_table_names_what_the_runner_puts_in_scope() -> None:
    """The names of docs/workflow-reference.md's scope table (language_reference.SCOPE) are
    the keys of the scope run_claimed builds, `item` and `index` included."""
    import ast

    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        from language_reference import SCOPE
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    tree = ast.parse((ROOT / "spane_cli" / "engine" / "runner.py").read_text())
    built: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            keys = {k.value for k in node.keys if isinstance(k, ast.Constant)}
            if ("input" in keys and "parents" in keys) or "item" in keys:
                built |= {str(k) for k in keys}
    documented = {
        re.split(r"[.<]", part.strip())[0] for name, _ in SCOPE for part in name.split(",")
    }
    assert documented - {""} == built
