"""`spane validate FILE...`"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from spane_cli.config import OutputFormat
from spane_cli.errors import ExitCode

HELP = (
    "Check workflow files against the schema and the graph rules. Prints every problem as "
    "FILE:LINE:COL: message (exit 2), or 'FILE: ok' per valid file (exit 0). "
    "-o json prints a list of {file, line, column, path, message}."
)


def validate(
    ctx: typer.Context,
    files: Annotated[list[str], typer.Argument(help="Workflow files to check.", metavar="FILE...")],
) -> None:
    from spane_cli.cli.app import settings_of
    from spane_cli.cli.render import dump_json, dump_yaml
    from spane_cli.nodes.registry import third_party_config_schemas
    from spane_cli.workflow.validate import validate_file

    settings = settings_of(ctx)
    config_schemas = third_party_config_schemas()
    problems = []
    for file in files:
        result = validate_file(file, config_schemas)
        problems.extend(result.problems)
        if result.ok and settings.output is OutputFormat.TABLE and not settings.quiet:
            sys.stdout.write(f"{file}: ok\n")
    if settings.output is OutputFormat.JSON:
        sys.stdout.write(dump_json([p.as_json() for p in problems]) + "\n")
    elif settings.output is OutputFormat.YAML:
        sys.stdout.write(dump_yaml([p.as_json() for p in problems]) if problems else "[]\n")
    else:
        for problem in problems:
            sys.stdout.write(problem.render() + "\n")
    if problems:
        raise typer.Exit(int(ExitCode.USAGE))
