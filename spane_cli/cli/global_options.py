"""Global options may come before or after the command name (`spane get ID -o json`).

Click only knows options of the group before the sub-command, so `main` moves any global
option that appears later to the front before Click sees the arguments.
"""

from __future__ import annotations

GLOBAL_FLAGS = {"-q", "--quiet", "--debug"}
GLOBAL_WITH_VALUE = {"--db", "--redis", "-o", "--output"}


def hoist_global_options(argv: list[str]) -> list[str]:
    front: list[str] = []
    rest: list[str] = []
    index = 0
    while index < len(argv):
        arg = argv[index]
        if arg == "--":
            rest.extend(argv[index:])
            break
        name = arg.split("=", 1)[0] if arg.startswith("--") else arg
        inline_value = name in GLOBAL_WITH_VALUE and "=" in arg and arg.startswith("--")
        if arg in GLOBAL_FLAGS or inline_value:
            front.append(arg)
        elif arg in GLOBAL_WITH_VALUE:
            front.append(arg)
            if index + 1 < len(argv):
                front.append(argv[index + 1])
                index += 1
        elif arg.startswith("-o") and len(arg) > 2 and not arg.startswith("--"):
            front.append(arg)  # -ojson
        else:
            rest.append(arg)
        index += 1
    return front + rest
