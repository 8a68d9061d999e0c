"""Machine output (json, yaml) kept apart from human output (Rich only on a terminal)."""

from __future__ import annotations

import json
import sys
from typing import Any

from spane_cli.config import OutputFormat


def dump_json(data: Any) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False, default=str)


def dump_yaml(data: Any) -> str:
    import yaml

    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=False)


def print_data(data: Any, output: OutputFormat) -> bool:
    """Print `data` as json or yaml and return True; return False for table output."""
    if output is OutputFormat.JSON:
        sys.stdout.write(dump_json(data) + "\n")
        return True
    if output is OutputFormat.YAML:
        sys.stdout.write(dump_yaml(data))
        return True
    return False


def error_line(message: str) -> None:
    sys.stderr.write(f"spane: {message}\n")
    sys.stderr.flush()
