"""Durations as written in workflow files: seconds, `500ms`, `1h30m`, `2d` or ISO 8601 `PT5M`."""

from __future__ import annotations

import math
import re

_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_COMPACT = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_COMPACT_WHOLE = re.compile(r"^(?:\d+(?:\.\d+)?(?:ms|s|m|h|d|w))+$")
_ISO = re.compile(
    r"^P(?:(?P<w>\d+(?:\.\d+)?)W)?(?:(?P<d>\d+(?:\.\d+)?)D)?"
    r"(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?(?:(?P<m>\d+(?:\.\d+)?)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$"
)
_PLAIN = re.compile(r"^\d+(?:\.\d+)?$")

# The same grammar as a JSON Schema pattern, so editors flag bad durations too.
DURATION_PATTERN = (
    r"^(\d+(\.\d+)?|(\d+(\.\d+)?(ms|s|m|h|d|w))+|"
    r"P(\d+(\.\d+)?W)?(\d+(\.\d+)?D)?(T(\d+(\.\d+)?H)?(\d+(\.\d+)?M)?(\d+(\.\d+)?S)?)?)$"
)
DURATION_HINT = "use a number of seconds, 500ms, 90s, 5m, 1h30m, 2d or ISO 8601 like PT5M"


class DurationError(ValueError):
    """Raised when a value is not a duration spane understands."""


def parse_duration(value: object) -> float:
    """Return the duration in seconds; raise DurationError for anything else."""
    if isinstance(value, bool):
        raise DurationError(f"invalid duration {value!r}: {DURATION_HINT}")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise DurationError(f"invalid duration {value!r}: must be a finite number")
        if value < 0:
            raise DurationError(f"invalid duration {value!r}: must not be negative")
        return float(value)
    if not isinstance(value, str):
        raise DurationError(f"invalid duration {value!r}: {DURATION_HINT}")
    text = value.strip()
    if _PLAIN.match(text):
        return float(text)
    if _COMPACT_WHOLE.match(text):
        return sum(float(n) * _UNIT_SECONDS[unit] for n, unit in _COMPACT.findall(text))
    iso = _ISO.match(text)
    if iso and text not in ("P", "PT") and not text.endswith("T"):
        parts = {k: float(v) for k, v in iso.groupdict().items() if v is not None}
        return (
            parts.get("w", 0) * 604800
            + parts.get("d", 0) * 86400
            + parts.get("h", 0) * 3600
            + parts.get("m", 0) * 60
            + parts.get("s", 0)
        )
    raise DurationError(f"invalid duration {value!r}: {DURATION_HINT}")


def format_duration(seconds: float) -> str:
    """A short human form, e.g. 0.25 -> '250ms', 5400 -> '1h30m'."""
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    if seconds < 60:
        return f"{seconds:.1f}s".replace(".0s", "s")
    whole = int(seconds)
    out = ""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if whole >= size:
            out += f"{whole // size}{unit}"
            whole %= size
    return out
