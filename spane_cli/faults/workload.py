"""The workflows a fault run submits: every node that has a side effect appends one line
`EXECUTION NODE` to a log file, so the log says how often each side effect really ran."""

from __future__ import annotations

from pathlib import Path

_RECORD = 'echo "$SPANE_FAULT_EXECUTION $SPANE_FAULT_NODE" >> {log}'
# Appended to the node id on the line a node writes when it starts (only `slow` does).
START_SUFFIX = ".start"


_SLOW = (
    'echo "$SPANE_FAULT_EXECUTION $SPANE_FAULT_NODE{start}" >> {{log}};'
    ' sh -c "sleep 0.5; {record}" & wait'
).format(start=START_SUFFIX, record=_RECORD.replace('"', '\\"'))


def _shell(
    node_id: str, log: Path, needs: list[str], extra: str = "", command: str | None = None
) -> str:
    needs_line = f"    needs: [{', '.join(needs)}]\n" if needs else ""
    run = command if command is not None else _RECORD.format(log=log)
    return (
        f"  {node_id}:\n    type: shell\n{needs_line}{extra}"
        f"    config:\n      run: '{run}'\n"
        "      env:\n"
        '        SPANE_FAULT_EXECUTION: "{{ execution.id }}"\n'
        f"        SPANE_FAULT_NODE: {node_id}\n"
    )


def write_workflows(directory: Path, log: Path) -> list[Path]:
    """A chain with a slow link, a fan-out and join, and a foreach loop with a retry."""
    chain = "version: 1\nname: fault-chain\nnodes:\n" + "".join(
        [
            _shell("a", log, []),
            _shell("b", log, ["a"]),
            # Long enough for kills to land inside it; it marks its start, and its side effect
            # is written by a process of its own (a grandchild of the worker), so a kill that
            # left that process running would show as a second record.
            _shell("slow", log, ["b"], command=_SLOW.format(log=log)),
            _shell("c", log, ["slow"]),
        ]
    )
    fan = "version: 1\nname: fault-fan\nnodes:\n  root: {type: noop}\n" + "".join(
        [_shell(f"leaf{i}", log, ["root"]) for i in range(6)]
        + [_shell("join", log, [f"leaf{i}" for i in range(6)])]
    )
    loop = (
        "version: 1\nname: fault-loop\nnodes:\n"
        "  items:\n    type: transform\n    config: {output: [1, 2, 3, 4]}\n"
        "  each:\n    type: transform\n    needs: [items]\n    foreach: '{{ parents }}'\n"
        "    retry: {attempts: 3, delay: 100ms}\n"
        "    config: {output: '{{ item * 2 }}'}\n" + _shell("after", log, ["each"])
    )
    paths = []
    for name, text in (("chain", chain), ("fan", fan), ("loop", loop)):
        path = directory / f"{name}.yaml"
        path.write_text(text)
        paths.append(path)
    return paths


def side_effect_nodes(workflow_name: str) -> list[str]:
    """The nodes of a workload workflow that write to the side-effect log."""
    if workflow_name == "fault-chain":
        return ["a", "b", "slow", "c"]
    if workflow_name == "fault-fan":
        return [f"leaf{i}" for i in range(6)] + ["join"]
    return ["after"]
