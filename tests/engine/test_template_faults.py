"""A template that raises (not a Jinja2 error: ZeroDivisionError, TypeError) fails its node or
its execution with one line, wherever it stands; the worker that rendered it goes on."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import final_document, spane_process

ROOT = Path(__file__).resolve().parents[2]

PLACES = {
    "foreach": '  n:\n    type: noop\n    foreach: "x {{ 1 / 0 }}"\n',
    "when": '  n:\n    type: noop\n    when: "{{ 1 / 0 }}"\n',
    "config": "  n:\n    type: transform\n    config: {output: \"a {{ 'a' * 'b' }}\"}\n",
    "output": '  n:\n    type: noop\noutput: "total {{ 1 / 0 }}"\n',
    "item": "  n:\n    type: transform\n    foreach: [1, 0]\n"
    '    config: {output: "{{ 1 / item }} x"}\n',
}


@pytest.mark.parametrize("place", sorted(PLACES))
def test_a_raising_template_fails_the_run_with_one_line(place: str, tmp_path: Path) -> None:
    flow = tmp_path / "flow.yaml"
    flow.write_text(f"version: 1\nname: raising-{place}\nnodes:\n{PLACES[place]}")
    # Then a healthy run on the same embedded services: the worker is still serving.
    healthy = tmp_path / "healthy.yaml"
    healthy.write_text("version: 1\nname: healthy\nnodes:\n  ok: {type: noop}\n")
    home = tmp_path / "home"
    result = spane_process("run", "--local", "-o", "json", str(flow), home=home)
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 1, result.stderr
    final = final_document(result.stdout)
    assert final["status"] == "failed"
    assert "Error" in final["error"] and "\n" not in final["error"]
    again = spane_process("run", "--local", str(healthy), home=home)
    assert again.returncode == 0, again.stderr
