"""The generated files (schema, man pages, completions) are committed and up to date."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = ROOT / "schema" / "workflow.schema.json"
WORKFLOWS = sorted((ROOT / "workflows").glob("**/*.yaml"))


def test_generated_files_are_up_to_date() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "generate.py"), "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, (
        "generated files are stale; run .venv/bin/python scripts/generate.py\n"
        + result.stdout
        + result.stderr
    )


def committed_schema() -> dict:
    return json.loads(SCHEMA.read_text(encoding="utf-8"))


def test_schema_is_a_valid_draft_2020_12_schema() -> None:
    schema = committed_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)


def test_there_are_example_workflows() -> None:
    assert WORKFLOWS, "no workflows/**/*.yaml found"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_example_workflow_matches_committed_schema(path: Path) -> None:
    validator = jsonschema.Draft202012Validator(committed_schema())
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    errors = [
        f"{'/'.join(str(p) for p in error.absolute_path) or '<root>'}: {error.message}"
        for error in validator.iter_errors(document)
    ]
    assert not errors, "\n".join(errors)


def command_paths() -> list[tuple[str, ...]]:
    import typer.main

    from spane_cli.cli.app import app

    paths: list[tuple[str, ...]] = []

    def walk(command: object, path: tuple[str, ...]) -> None:
        paths.append(path)
        for name, sub in (getattr(command, "commands", None) or {}).items():
            if not getattr(sub, "hidden", False):
                walk(sub, (*path, name))

    walk(typer.main.get_command(app), ())
    return paths


def test_every_command_has_a_man_page() -> None:
    paths = command_paths()
    assert len(paths) > 1
    missing = [
        "-".join(("spane", *path)) + ".1"
        for path in paths
        if not (ROOT / "man" / ("-".join(("spane", *path)) + ".1")).is_file()
    ]
    assert not missing, f"missing man pages: {missing}"


def test_every_command_is_in_the_completions() -> None:
    names = {path[-1] for path in command_paths() if path}
    for script in ("spane.bash", "_spane", "spane.fish"):
        text = (ROOT / "completions" / script).read_text(encoding="utf-8")
        assert not [name for name in names if name not in text], script


@pytest.mark.parametrize(
    ("shell", "script"),
    [("bash", "spane.bash"), ("zsh", "_spane"), ("fish", "spane.fish")],
)
def test_completion_script_parses(shell: str, script: str) -> None:
    executable = shutil.which(shell)
    if executable is None:
        if shell == "bash":
            pytest.fail("bash is not installed")
        pytest.skip(f"{shell} is not installed")
    result = subprocess.run(
        [executable, "-n", str(ROOT / "completions" / script)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


def test_bash_completion_offers_commands_and_choices() -> None:
    bash = shutil.which("bash")
    assert bash is not None
    script = f"""
source {str(ROOT / "completions" / "spane.bash")!r}
t() {{ COMP_WORDS=("$@"); COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 )); COMPREPLY=(); _spane;
      echo "${{COMPREPLY[*]}}"; }}
t spane va
t spane -o ''
t spane graph --format m
"""
    result = subprocess.run(
        [bash, "-c", script], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["validate", "table json yaml", "mermaid"]
