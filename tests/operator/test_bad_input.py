"""Bad input to a command is one clear line on stderr and exit 2, and writes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import run_spane

ROOT = Path(__file__).resolve().parents[2]
FLOW = str(ROOT / "workflows" / "etl.yaml")


def deep_flow(tmp_path: Path) -> str:
    expression = "(" * 500 + "1" + ")" * 500
    path = tmp_path / "deep.yaml"
    node = f'  a: {{type: transform, config: {{output: "{{{{ {expression} }}}}"}}}}\n'
    path.write_text("version: 1\nname: deep\nnodes:\n" + node)
    return str(path)


CASES = {
    "redis-url-without-scheme": lambda tmp: ["--redis", "notaurl", "run", FLOW],
    "redis-port-out-of-range": lambda tmp: ["--redis", "redis://127.0.0.1:99999/0", "run", FLOW],
    "postgres-url-without-database": lambda tmp: ["--db", "postgresql://", "list"],
    "sqlite-url-without-file": lambda tmp: ["--db", "sqlite://", "list"],
    "sqlite-in-a-missing-directory": lambda tmp: [
        "--db", f"sqlite:///{tmp}/no/such/dir/spane.db", "list"
    ],
    "idempotency-key-too-long": lambda tmp: [
        "run", "--local", "--idempotency-key", "k" * 600, FLOW
    ],
    "binary-input-file": lambda tmp: ["run", "--local", "--input-file", str(tmp / "bin"), FLOW],
    "expression-500-deep": lambda tmp: ["validate", deep_flow(tmp)],
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_line_and_exit_2(case: str, tmp_path: Path) -> None:
    (tmp_path / "bin").write_bytes(bytes(range(128, 256)) * 4)
    result = run_spane(*CASES[case](tmp_path))
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "internal error" not in result.output
    message = result.stderr.strip() or result.stdout.strip()
    assert message and len(message.splitlines()) == 1, result.output
    assert not (tmp_path / "no").exists()  # a mistyped directory is not created
