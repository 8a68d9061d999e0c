"""Looking node types up: built-ins, `spane.nodes` entry points, unknown names."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from spane_cli.nodes.registry import node_type
from spane_cli.workflow.node_configs import BUILTIN_CONFIG_SCHEMAS


@pytest.mark.parametrize("type_name", sorted(BUILTIN_CONFIG_SCHEMAS))
def test_every_builtin_type_has_an_executor(type_name):
    executor = node_type(type_name)
    assert executor.type_name == type_name
    assert executor.config_schema is BUILTIN_CONFIG_SCHEMAS[type_name]
    assert callable(executor.run)
    assert node_type(type_name) is executor  # cached


def test_unknown_type_is_a_key_error_naming_it():
    with pytest.raises(KeyError, match="unknown node type 'shelll'"):
        node_type("shelll")


def _python(code: str, pythonpath: str | None = None) -> str:
    """Run `code` in a fresh interpreter: entry points and sys.modules start clean."""
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = pythonpath + os.pathsep + env.get("PYTHONPATH", "")
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return done.stdout.strip()


def test_importing_the_registry_loads_no_executor():
    loaded = _python(
        """
        import sys
        import spane_cli.nodes.registry
        print(sorted(m for m in sys.modules if m == "httpx" or m.startswith("spane_cli.nodes.")))
        """
    )
    assert loaded == "['spane_cli.nodes.registry']"


def _install_shout_plugin(tmp_path):
    """A `shout` node type (and a `noop` that must not replace the built-in) on an entry
    point, importable with `tmp_path` on PYTHONPATH."""
    (tmp_path / "spane_plugin_example.py").write_text(
        textwrap.dedent(
            """
            from spane_cli.nodes.base import NodeResult

            class Shout:
                type_name = "shout"
                config_schema = {"type": "object"}

                def run(self, context):
                    return NodeResult.ok(str(context.input).upper())
            """
        )
    )
    dist_info = tmp_path / "spane_plugin_example-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: spane-plugin-example\nVersion: 1.0\n"
    )
    (dist_info / "entry_points.txt").write_text(
        "[spane.nodes]\nshout = spane_plugin_example:Shout\nnoop = spane_plugin_example:Shout\n"
    )


def test_third_party_type_from_an_entry_point(tmp_path):
    _install_shout_plugin(tmp_path)
    found = _python(
        """
        from spane_cli.nodes.registry import node_type
        shout = node_type("shout")
        print(type(shout).__name__, node_type("shout") is shout, type(node_type("noop")).__name__)
        """,
        pythonpath=str(tmp_path),
    )
    # A plugin cannot replace a built-in.
    assert found == "Shout True NoopNode"


def test_validate_knows_a_third_party_type(tmp_path):
    _install_shout_plugin(tmp_path)
    flow = tmp_path / "flow.yaml"
    flow.write_text("version: 1\nname: loud\nnodes:\n  a: {type: shout, config: {}}\n")
    checked = _python(
        f"""
        from spane_cli.cli.app import main
        main(["validate", {str(flow)!r}])
        """,
        pythonpath=str(tmp_path),
    )
    assert checked == f"{flow}: ok"
