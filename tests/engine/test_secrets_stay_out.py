"""A secret used everywhere a template can go never reaches the database: not in foreach
items, outputs, errors, logs, events, dead letters or a sub-workflow's input."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from helpers import spane_process
from secret_flows import CHILD, PARENT, SECRET

ROOT = Path(__file__).resolve().parents[2]


def test_a_secret_used_everywhere_is_in_no_table(tmp_path: Path) -> None:
    (tmp_path / "child.yaml").write_text(CHILD)
    flow = tmp_path / "flow.yaml"
    flow.write_text(PARENT)
    home = tmp_path / "home"
    result = spane_process(
        "run", "--local", str(flow), home=home, env={"SPANE_SECRET_TOKEN": SECRET}
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
