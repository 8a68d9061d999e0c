"""Global options may come before or after the command name (`spane get ID -o json`).

Click only knows options of the group before the sub-command, so `main` moves any global
option that appears later to the front before Click sees the arguments, and shell completion
does the same.
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


COMPLETE_VAR = "_SPANE_COMPLETE"  # Click's name for `spane`: the shell scripts set it


def completion_args(args: list[str]) -> list[str]:
    """The words before the one being completed, as Click's completion should see them."""
    if args and args[-1] in GLOBAL_WITH_VALUE:
        return [args[-1]]  # the value of a global option, wherever the option stands
    return hoist_global_options(args)


def register_completion() -> None:
    """Typer's bash, zsh and fish completion (which `add_completion=False` leaves out), each
    taught about global options after the command name. Imported only when a shell asks."""
    from typer._click.shell_completion import (
        CompletionItem,
        ShellComplete,
        add_completion_class,
        get_completion_class,
    )
    from typer.completion import completion_init
    from typer.core import TyperOption

    class GlobalOptionsAnywhere(ShellComplete):
        def get_completions(self, args: list[str], incomplete: str) -> list[CompletionItem]:
            args = completion_args(args)
            items = super().get_completions(args, incomplete)
            if not incomplete.startswith("-"):
                return items
            # After a command name Click offers only that command's own options.
            offered = {item.value for item in items}
            return items + [
                CompletionItem(name, help=param.help)
                for param in self.cli.params
                if isinstance(param, TyperOption) and not set(param.opts) & set(args)
                for name in param.opts
                if name in GLOBAL_FLAGS | GLOBAL_WITH_VALUE
                and name.startswith(incomplete)
                and name not in offered
            ]

    completion_init()
    for shell in ("bash", "zsh", "fish"):
        typer_class = get_completion_class(shell)
        assert typer_class is not None
        add_completion_class(
            type(typer_class.__name__, (GlobalOptionsAnywhere, typer_class), {}), shell
        )
