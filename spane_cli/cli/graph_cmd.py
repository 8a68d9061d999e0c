"""`spane graph FILE --format tree|mermaid|dot`"""

from __future__ import annotations

import sys
from enum import StrEnum
from typing import Annotated

import typer

HELP = "Show the DAG of a workflow as an indented tree, a Mermaid flowchart or Graphviz dot."


class GraphFormat(StrEnum):
    TREE = "tree"
    MERMAID = "mermaid"
    DOT = "dot"


def graph(
    file: Annotated[str, typer.Argument(help="The workflow file.", metavar="FILE")],
    fmt: Annotated[
        GraphFormat, typer.Option("--format", "-f", help="tree, mermaid or dot.")
    ] = GraphFormat.TREE,
) -> None:
    from spane_cli.errors import ExitCode
    from spane_cli.nodes.registry import third_party_config_schemas
    from spane_cli.workflow.graph_render import render_dot, render_mermaid, render_tree
    from spane_cli.workflow.validate import validate_file

    result = validate_file(file, third_party_config_schemas())
    if result.workflow is None:
        for problem in result.problems:
            sys.stderr.write(problem.render() + "\n")
        raise typer.Exit(int(ExitCode.USAGE))  # every problem is printed above, once
    renderers = {
        GraphFormat.TREE: render_tree,
        GraphFormat.MERMAID: render_mermaid,
        GraphFormat.DOT: render_dot,
    }
    sys.stdout.write(renderers[fmt](result.workflow))
