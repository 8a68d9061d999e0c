"""Where the global settings come from: the flag, then SPANE_*, then the unprefixed variable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer.main
from helpers import run_spane

from spane_cli.cli.app import app

DEFAULT_REDIS = "redis://localhost:6379/0"


def _databases_created(tmp_path: Path, *args: str) -> list[str]:
    run_spane(*args, "db", "status")
    return sorted(p.name for p in tmp_path.glob("*.db"))


def test_database_flag_wins_over_both_variables(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("SPANE_DATABASE_URL", f"sqlite:///{tmp_path}/spane-env.db")
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/plain-env.db")
    assert _databases_created(tmp_path, "--db", f"sqlite:///{tmp_path}/flag.db") == ["flag.db"]


def test_prefixed_database_variable_wins_over_the_plain_one(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("SPANE_DATABASE_URL", f"sqlite:///{tmp_path}/spane-env.db")
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/plain-env.db")
    assert _databases_created(tmp_path) == ["spane-env.db"]


def test_an_empty_prefixed_variable_counts_as_unset(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("SPANE_DATABASE_URL", "")
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/plain-env.db")
    assert _databases_created(tmp_path) == ["plain-env.db"]


def _redis_url_tried(tmp_path: Path, monkeypatch, *args: str) -> str:
    """The Redis URL `health` reports; Redis itself is not contacted (it is shared)."""
    monkeypatch.setattr("spane_cli.engine.connections.open_redis", _refuse)
    result = run_spane("--db", f"sqlite:///{tmp_path}/spane.db", *args, "health", "-o", "json")
    return json.loads(result.stdout)["redis"]["url"]


@pytest.mark.parametrize(
    ("flag", "prefixed", "plain", "expected"),
    [
        ("redis://flag/0", "redis://spane/0", "redis://plain/0", "redis://flag/0"),
        (None, "redis://spane/0", "redis://plain/0", "redis://spane/0"),
        (None, None, "redis://plain/0", "redis://plain/0"),
        (None, None, None, DEFAULT_REDIS),
    ],
)
def test_redis_url_precedence(
    tmp_path: Path, monkeypatch, flag: str | None, prefixed: str | None, plain: str | None,
    expected: str,
) -> None:  # fmt: skip
    # The suite points every command at a dead socket; this test resolves the URL itself.
    monkeypatch.delenv("SPANE_REDIS_URL", raising=False)
    if prefixed:
        monkeypatch.setenv("SPANE_REDIS_URL", prefixed)
    if plain:
        monkeypatch.setenv("REDIS_URL", plain)
    args = ("--redis", flag) if flag else ()
    assert _redis_url_tried(tmp_path, monkeypatch, *args) == expected


def _refuse(url: str) -> None:
    from spane_cli.errors import ServiceUnreachable

    raise ServiceUnreachable(f"Redis unreachable at {url}: not tried in tests")


def _debug_option(*args: str) -> bool:
    with typer.main.get_command(app).make_context("spane", [*args, "health"]) as ctx:
        return bool(ctx.params["debug"])


@pytest.mark.parametrize(("value", "expected"), [("1", True), ("true", True), ("0", False)])
def test_spane_debug_variable(monkeypatch, value: str, expected: bool) -> None:
    monkeypatch.setenv("SPANE_DEBUG", value)
    assert _debug_option() is expected


def test_debug_flag_without_the_variable() -> None:
    assert _debug_option() is False
    assert _debug_option("--debug") is True


def test_help_names_the_variables() -> None:
    text = " ".join(run_spane("--help").stdout.split())
    assert "[env var: SPANE_DATABASE_URL, DATABASE_URL]" in text
    assert "[env var: SPANE_REDIS_URL, REDIS_URL]" in text
    assert "[env var: SPANE_DEBUG]" in text
