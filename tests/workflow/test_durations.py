"""Durations as users write them (SPEC §1: "Durations everywhere")."""

from __future__ import annotations

import math

import pytest

from spane_cli.workflow.durations import DurationError, format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("90s", 90),
        ("5m", 300),
        ("1h30m", 5400),
        ("2d", 172800),
        ("1w", 604800),
        ("PT5M", 300),
        ("PT1H30M", 5400),
        ("P1D", 86400),
        ("P1DT2H", 93600),
        ("PT0.5S", 0.5),
        ("12", 12),
        ("1.5", 1.5),
        (" 5m ", 300),
        (12, 12),
        (1.5, 1.5),
        (0, 0),
    ],
)
def test_parse_duration_values(text: object, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "value",
    [
        *["5 minutes", "", "-1", "1x", "P", "PT", "P1DT", "m5", "5mm", "1h 30m"],
        *[-1, True, False, None, [5], {"s": 5}, math.inf, math.nan],
    ],
)
def test_parse_duration_rejects(value: object) -> None:
    with pytest.raises(DurationError) as caught:
        parse_duration(value)
    assert "invalid duration" in str(caught.value)


def test_rejection_says_what_is_accepted() -> None:
    with pytest.raises(DurationError, match=r"500ms.*PT5M"):
        parse_duration("soon")


@pytest.mark.parametrize(
    ("seconds", "text"), [(0.25, "250ms"), (5, "5s"), (90, "1m30s"), (5400, "1h30m"), (86400, "1d")]
)
def test_format_duration_round_trips(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    assert parse_duration(text) == pytest.approx(seconds)
