"""Every node type is held to its `timeout`, python functions and templates included; the
worker that ran an overrunning node goes on serving."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from helpers import final_document, spane_process

ROOT = Path(__file__).resolve().parents[2]

SPIN = """
def spin(context):
    while True:
        pass


def swallow(context):
    while True:
        try:
            while True:
                pass
        except Exception:
            pass
"""

NESTED_LOOPS = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
FLOWS = {
    "python": "  n: {type: python, timeout: 1s, config: {function: 'spin_module:spin'}}\n",
    "python-that-catches": (
        "  n: {type: python, timeout: 1s, config: {function: 'spin_module:swallow'}}\n"
    ),
    "transform": f"  n: {{type: transform, timeout: 1s, config: {{output: '{NESTED_LOOPS}'}}}}\n",
}


@pytest.mark.parametrize("kind", sorted(FLOWS))
def test_an_overrunning_node_fails_timed_out_and_the_worker_goes_on(
    kind: str, tmp_path: Path
) -> None:
    (tmp_path / "spin_module.py").write_text(SPIN)
    flow = tmp_path / "flow.yaml"
    flow.write_text(f"version: 1\nname: overrun\nnodes:\n{FLOWS[kind]}  after: {{type: noop}}\n")
    started = time.monotonic()
    result = spane_process(
        "run", "--local", "-o", "json", str(flow),
        home=tmp_path / "home", env={"PYTHONPATH": str(tmp_path)},
    )  # fmt: skip
    took = time.monotonic() - started
    assert result.returncode == 1, result.stderr
    final = final_document(result.stdout)
    assert final["nodes"]["n"]["error"].startswith("timed out after 1s"), final["nodes"]["n"]
    # The same worker process ran `after` too: it survived the overrun.
    assert final["nodes"]["after"]["status"] == "succeeded"
    assert took < 20, f"the run took {took:.1f} s"


def test_a_template_that_builds_a_huge_value_is_refused() -> None:
    from spane_cli.workflow.expressions import ExpressionError, render_value

    for template in ("{{ 'a' * 10**9 }}", "x {{ [0] * 10**9 }}", "{{ 7 ** 100000000 }}"):
        with pytest.raises(ExpressionError, match="sandbox refused"):
            render_value(template, {})
