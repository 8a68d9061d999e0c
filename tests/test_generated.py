"""The generated files (schema, man pages, completions) are committed and up to date."""

from __future__ import annotations

import json
import os
import shlex
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


def _spane_on_path(tmp_path: Path) -> dict[str, str]:
    """An environment whose PATH has a `spane` of this interpreter: the scripts call it."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    wrapper = bin_dir / "spane"
    wrapper.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m spane_cli "$@"\n')
    wrapper.chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}


def bash_completions(tmp_path: Path, *lines: list[str]) -> list[str]:
    """What completions/spane.bash offers for each command line (its last word incomplete)."""
    bash = shutil.which("bash")
    assert bash is not None
    calls = "\n".join("t " + " ".join(shlex.quote(word) for word in line) for line in lines)
    script = f"""
source {shlex.quote(str(ROOT / "completions" / "spane.bash"))}
t() {{ COMP_WORDS=("$@"); COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 )); COMPREPLY=();
      _spane_completion spane; echo "${{COMPREPLY[*]}}"; }}
{calls}
"""
    result = subprocess.run(
        [bash, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=_spane_on_path(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_every_command_is_completed(tmp_path: Path) -> None:
    paths = command_paths()
    groups = sorted({path[:-1] for path in paths if path})
    offered = bash_completions(tmp_path, *[["spane", *group, ""] for group in groups])
    for group, words in zip(groups, offered, strict=True):
        children = {path[-1] for path in paths if path[:-1] == group and path}
        assert set(words.split()) == children, group


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


def test_bash_completion_offers_commands_and_choices(tmp_path: Path) -> None:
    assert bash_completions(
        tmp_path,
        ["spane", "va"],
        ["spane", "-o", ""],
        ["spane", "graph", "--format", "m"],
        ["spane", "get", "ID", "-o", ""],  # a global option after the command name
        ["spane", "get", "ID", "--d"],
        ["spane", "run", "--idem"],
    ) == [
        "validate",
        "table wide name json yaml",
        "mermaid",
        "table wide name json yaml",
        "--db --debug",
        "--idempotency-key",
    ]


@pytest.mark.parametrize(
    ("shell", "line", "expected"),
    [
        ("zsh", "spane dlq re", '_arguments \'*: :(("replay":"Reopen the failed node'),
        ("fish", "spane graph --format ", "tree\nmermaid\ndot"),
    ],
)
def test_zsh_and_fish_get_completions_from_spane(
    tmp_path: Path, shell: str, line: str, expected: str
) -> None:
    env = {
        **_spane_on_path(tmp_path),
        "_SPANE_COMPLETE": f"complete_{shell}",
        "_TYPER_COMPLETE_ARGS": line,
        "_TYPER_COMPLETE_FISH_ACTION": "get-args",
    }
    result = subprocess.run(
        ["spane"], capture_output=True, text=True, timeout=60, env=env, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(expected)


def test_bash_completion_offers_ids_statuses_and_workflow_names(tmp_path: Path) -> None:
    from helpers import run_spane

    flow = tmp_path / "flow.yaml"
    flow.write_text("version: 1\nname: tabbed\nnodes:\n  a: {type: noop}\n")
    made = run_spane("run", "--local", "-q", str(flow))
    assert made.exit_code == 0, made.stderr
    execution_id = made.stdout.strip()
    offered = bash_completions(
        tmp_path,
        ["spane", "get", execution_id[:4]],
        ["spane", "list", "--status", "fa"],
        ["spane", "list", "--workflow", "tab"],
    )
    assert execution_id in offered[0].split()
    assert offered[1:] == ["failed", "tabbed"]


def test_every_command_has_examples_that_parse() -> None:
    import shlex

    from spane_cli.cli.examples import EXAMPLES

    paths = {" ".join(path) for path in command_paths()}
    assert sorted(paths - set(EXAMPLES)) == []  # a command without examples
    assert sorted(set(EXAMPLES) - paths) == []  # examples of a command that is gone
    for path, examples in EXAMPLES.items():
        for _, command in examples:
            first = shlex.split(command.split("|")[0].split("&&")[0])
            assert first[0] == "spane", command
            # The command's own words, in order, among the words that are not options.
            words = [w for w in first[1:] if not w.startswith("-")]
            assert words[: len(path.split())] == path.split() or not path, (path, command)
