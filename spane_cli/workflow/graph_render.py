"""Text forms of a workflow's DAG: an indented tree, Mermaid and Graphviz dot."""

from __future__ import annotations

import json

from spane_cli.workflow.model import Node, Workflow


def _label(node: Node) -> str:
    extras = []
    # An exit handler's implied `always` is what on_exit already says.
    if node.trigger != "all_success" and not node.on_exit:
        extras.append(f"trigger={node.trigger}")
    if node.when:
        extras.append(f"when: {node.when}")
    if node.foreach is not None:
        extras.append("foreach")
    if node.continue_on_fail:
        extras.append("continue_on_fail")
    if node.on_exit:
        extras.append("on_exit")
    suffix = f"  [{', '.join(extras)}]" if extras else ""
    return f"{node.id} ({node.type}){suffix}"


def render_tree(workflow: Workflow) -> str:
    lines = [f"{workflow.name}"]
    shown: set[str] = set()

    def walk(node_id: str, prefix: str, last: bool) -> None:
        node = workflow.nodes[node_id]
        connector = "└── " if last else "├── "
        needs = workflow.drawn_needs(node_id)
        note = f"  (needs {', '.join(needs)})" if len(needs) > 1 else ""
        if node_id in shown:
            lines.append(f"{prefix}{connector}{node_id} ↑ (shown above)")
            return
        lines.append(f"{prefix}{connector}{_label(node)}{note}")
        shown.add(node_id)
        children = [c for c in workflow.children(node_id) if node_id in workflow.drawn_needs(c)]
        for index, child in enumerate(children):
            walk(child, prefix + ("    " if last else "│   "), index == len(children) - 1)

    entries = workflow.entry_nodes
    for index, entry in enumerate(entries):
        walk(entry, "", index == len(entries) - 1)
    return "\n".join(lines) + "\n"


def _mermaid_ids(workflow: Workflow) -> dict[str, str]:
    """Mermaid-safe ids (`load-db` -> `n_load_db`), distinct even when `a-b` and `a_b` exist."""
    ids: dict[str, str] = {}
    taken: set[str] = set()
    for node_id in workflow.nodes:
        candidate = base = "n_" + node_id.replace("-", "_")
        suffix = 2
        while candidate in taken:
            candidate, suffix = f"{base}_{suffix}", suffix + 1
        ids[node_id] = candidate
        taken.add(candidate)
    return ids


def render_mermaid(workflow: Workflow) -> str:
    lines = ["flowchart TD"]
    _mermaid_id = _mermaid_ids(workflow).__getitem__
    for node in workflow.nodes.values():
        shape = ("{", "}") if node.type == "branch" else ("[", "]")
        text = f"{node.id}<br/><i>{node.type}</i>".replace('"', "'")
        lines.append(f'    {_mermaid_id(node.id)}{shape[0]}"{text}"{shape[1]}')
    for node in workflow.nodes.values():
        for parent in workflow.drawn_needs(node.id):
            arrow = "-.->" if node.when or node.trigger != "all_success" else "-->"
            lines.append(f"    {_mermaid_id(parent)} {arrow} {_mermaid_id(node.id)}")
    return "\n".join(lines) + "\n"


def render_dot(workflow: Workflow) -> str:
    lines = [f"digraph {json.dumps(workflow.name)} {{", "    rankdir=TB;", "    node [shape=box];"]
    for node in workflow.nodes.values():
        shape = " shape=diamond" if node.type == "branch" else ""
        label = json.dumps(f"{node.id}\n{node.type}")
        lines.append(f"    {json.dumps(node.id)} [label={label}{shape}];")
    for node in workflow.nodes.values():
        for parent in workflow.drawn_needs(node.id):
            style = " [style=dashed]" if node.when or node.trigger != "all_success" else ""
            lines.append(f"    {json.dumps(parent)} -> {json.dumps(node.id)}{style};")
    lines.append("}")
    return "\n".join(lines) + "\n"
