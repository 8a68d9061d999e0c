"""A secret used everywhere a template can go never reaches the database: not in foreach
items, outputs, errors, logs, events, dead letters or a sub-workflow's input."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SECRET = "s3cr3t-Vq8Zt"

CHILD = """version: 1
name: secret-child
nodes:
  echo: {type: transform, config: {output: "{{ input }}"}}
"""

PARENT = """version: 1
name: secret-everywhere
nodes:
  loop:
    type: transform
    foreach: ["{{ secrets.TOKEN }}", "plain"]
    config: {output: "item {{ item }} and {{ secrets.TOKEN }}"}
  show:
    type: transform
    config: {output: {value: "{{ secrets.TOKEN }}", nested: ["{{ secrets.TOKEN }}"]}}
  say:
    type: shell
    config:
      run: 'echo "token is $TOKEN"; echo "again $TOKEN" >&2'
      env: {TOKEN: "{{ secrets.TOKEN }}"}
  call:
    type: workflow
    config: {workflow: ./child.yaml, input: {token: "{{ secrets.TOKEN }}"}}
  broken:
    type: fail
    needs: [say]
    config: {message: "failed with {{ secrets.TOKEN }}"}
"""


def test_a_secret_used_everywhere_is_in_no_table(tmp_path: Path) -> None:
    (tmp_path / "child.yaml").write_text(CHILD)
    flow = tmp_path / "flow.yaml"
    flow.write_text(PARENT)
    home = tmp_path / "home"
    env = {**os.environ, "SPANE_HOME": str(home), "SPANE_SECRET_TOKEN": SECRET}
    result = subprocess.run(
        [sys.executable, "-m", "spane_cli", "run", "--local", str(flow)],
        capture_output=True,
        text=True,
        timeout=90,
        env=env,
        cwd=ROOT,
    )
    assert result.returncode == 1, result.stderr  # `broken` fails on purpose
    assert SECRET not in result.stdout + result.stderr
    database = sqlite3.connect(home / "spane.db")
    tables = [
        row[0] for row in database.execute("SELECT name FROM sqlite_master WHERE type='table'")
    ]
    found = []
    for table in tables:
        for row in database.execute(f'SELECT * FROM "{table}"'):
            if any(SECRET in str(value) for value in row):
                found.append((table, row))
    assert found == []
    masked = database.execute("SELECT count(*) FROM node_item WHERE value LIKE '%***%'")
    assert masked.fetchone()[0] == 1  # the item is there, masked
