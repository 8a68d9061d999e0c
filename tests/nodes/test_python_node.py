"""The python node calling real functions from a module written for the test."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator

import pytest

from spane_cli.nodes.python_call import PythonNode
from spane_cli.states import OutcomeKind

MODULE = "spane_python_node_funcs"
SOURCE = textwrap.dedent(
    """
    import sys

    import asyncio

    from spane_cli.nodes.python_call import PythonContext

    def describe(limit, context):
        context.logger.info("describing %s", context.input["name"])
        context.logger.debug("token is %s", context.secrets["TOKEN"])
        return {
            "name": context.input["name"],
            "same_parents": context.parents == context.input,
            "limit": limit,
            "kwargs": context.config,
            "where": [
                context.execution_id, context.workflow_name, context.node_id, context.attempt
            ],
            "token": context.secrets["TOKEN"],
        }

    def add(a, b=10):
        return a + b

    def no_arguments():
        return "called"

    def annotated(job: "PythonContext", scale: int = 1):
        return job.input * scale

    def annotated_by_class(run: PythonContext):
        return run.attempt

    def old_style(ctx):
        return ctx.input

    def everything(**kwargs):
        return sorted(kwargs)

    def only_positional(a, /):
        return a

    async def later(delay, context):
        await asyncio.sleep(delay)
        return context.node_id

    def boom():
        raise ValueError("bad value")

    def boom_with_secret(context):
        context.logger.warning("about to fail")
        raise ValueError("bad value " + context.secrets.get("TOKEN", ""))

    def returns_a_set():
        return {1, 2}

    def long_story():
        raise RuntimeError("\\n  first line\\nsecond line")

    def returns_nan():
        return float("nan")

    def exits():
        sys.exit(3)

    def chatty(context):
        print("printed", context.input, "with token", context.secrets.get("TOKEN", ""))
        print("to stderr too", file=sys.stderr)
        return context.input

    NOT_CALLABLE = 5
    """
)


@pytest.fixture(scope="module", autouse=True)
def function_module(tmp_path_factory) -> Iterator[None]:
    folder = tmp_path_factory.mktemp("pyfuncs")
    (folder / f"{MODULE}.py").write_text(SOURCE)
    sys.path.insert(0, str(folder))
    yield
    sys.path.remove(str(folder))
    sys.modules.pop(MODULE, None)


def test_call_gets_kwargs_and_the_context_it_asks_for(context_for, capfd):
    config = {"function": f"{MODULE}:describe", "kwargs": {"limit": "{{ input.n }}"}}
    secrets = {"TOKEN": "s3cr3t-value"}
    result = PythonNode().run(context_for(config, input={"name": "ann", "n": 4}, secrets=secrets))
    assert result.outcome == OutcomeKind.SUCCEEDED, result.error
    assert result.output == {
        "name": "ann",
        "same_parents": True,
        "limit": 4,
        "kwargs": {"limit": 4},
        "where": ["e1", "w", "n1", 1],
        "token": "***",  # outputs are stored, so secret values never reach them
    }
    assert "INFO spane.node.n1: describing ann" in result.logs
    assert "token is ***" in result.logs
    assert "s3cr3t-value" not in result.logs
    assert capfd.readouterr().err == ""


def test_exception_fails_with_its_line_first_and_traceback_after(context_for, capfd):
    config = {"function": f"{MODULE}:boom_with_secret"}
    result = PythonNode().run(context_for(config, secrets={"TOKEN": "s3cr3t-value"}))
    assert result.outcome == OutcomeKind.FAILED
    first, details = result.error.split("\n", 1)
    assert first == "ValueError: bad value ***"
    assert details.startswith("Traceback (most recent call last):")
    assert "in boom_with_secret" in details
    assert "python_call.py" not in details  # the executor's own frame is noise
    assert "WARNING" in result.logs and "about to fail" in result.logs
    assert "in boom_with_secret" in result.logs
    assert "s3cr3t-value" not in result.error + result.logs
    assert capfd.readouterr().err == ""


def test_a_multi_line_message_keeps_its_first_line_first(context_for):
    result = PythonNode().run(context_for({"function": f"{MODULE}:long_story"}))
    first, details = result.error.split("\n", 1)
    assert first == "RuntimeError: first line"
    assert "second line" in details  # the whole message is still in the traceback


def test_non_json_return_fails(context_for):
    result = PythonNode().run(context_for({"function": f"{MODULE}:returns_a_set"}))
    assert result.outcome == OutcomeKind.FAILED
    assert result.error == (
        f"{MODULE}:returns_a_set returned a value that is not JSON-serializable: "
        "Object of type set is not JSON serializable"
    )
    nan = PythonNode().run(context_for({"function": f"{MODULE}:returns_nan"}))
    assert "not JSON-serializable" in nan.error


def test_sys_exit_fails_the_node_not_the_worker(context_for):
    result = PythonNode().run(context_for({"function": f"{MODULE}:exits"}))
    assert result.outcome == OutcomeKind.FAILED
    assert result.error.startswith("SystemExit: 3\n")


def test_missing_function_or_module_names_it(context_for):
    missing = PythonNode().run(context_for({"function": f"{MODULE}:nope"}))
    assert missing.error.splitlines()[0] == (
        f"cannot load python function '{MODULE}:nope': "
        f"AttributeError: module '{MODULE}' has no attribute 'nope'"
    )
    no_module = PythonNode().run(context_for({"function": "spane_no_such_module:f"}))
    assert no_module.error.splitlines()[0] == (
        "cannot load python function 'spane_no_such_module:f': "
        "ModuleNotFoundError: No module named 'spane_no_such_module' "
        "(modules come from the worker's packages, PYTHONPATH and --path DIR)"
    )
    not_callable = PythonNode().run(context_for({"function": f"{MODULE}:NOT_CALLABLE"}))
    assert not_callable.error.splitlines()[0] == (
        f"cannot load python function '{MODULE}:NOT_CALLABLE': "
        "TypeError: NOT_CALLABLE is not callable (int)"
    )


def test_print_goes_to_the_nodes_logs_per_thread(context_for, capfd):
    from concurrent.futures import ThreadPoolExecutor

    def run(item: int) -> str:
        context = context_for(
            {"function": f"{MODULE}:chatty"}, input=item, secrets={"TOKEN": "tk9"}
        )
        result = PythonNode().run(context)
        assert result.outcome == OutcomeKind.SUCCEEDED, result.error
        return result.logs

    with ThreadPoolExecutor(max_workers=4) as pool:
        logs = list(pool.map(run, range(8)))
    for item, text in enumerate(logs):
        assert f"printed {item} with token ***" in text
        assert "to stderr too" in text
        assert sum("printed" in line for line in text.splitlines()) == 1  # only its own thread's
    seen = capfd.readouterr()
    assert "printed" not in seen.out and "to stderr too" not in seen.err


@pytest.mark.parametrize(
    ("function", "kwargs", "input", "output"),
    [
        ("add", {"a": 1, "b": 2}, None, 3),
        ("add", {"a": "{{ input }}"}, 5, 15),  # a default the kwargs leave alone
        ("no_arguments", {}, None, "called"),
        ("annotated", {"scale": 3}, 2, 6),  # the context under another name, by annotation
        ("annotated_by_class", {}, None, 1),
        ("old_style", {}, "as before", "as before"),  # `ctx`: one argument, the context
        ("everything", {"z": 1, "a": 2}, None, ["a", "z"]),  # **kwargs gets no context
        ("later", {"delay": 0.01}, None, "n1"),  # async def runs to its end
    ],
)
def test_the_call_convention(context_for, function, kwargs, input, output):
    config = {"function": f"{MODULE}:{function}", "kwargs": kwargs}
    result = PythonNode().run(context_for(config, input=input))
    assert result.outcome == OutcomeKind.SUCCEEDED, result.error
    assert result.output == output


@pytest.mark.parametrize(
    ("function", "kwargs", "error"),
    [
        ("add", {}, f"config.kwargs do not fit {MODULE}:add(a, b=10): "
         "missing a required argument: 'a'"),
        ("add", {"a": 1, "c": 2}, f"config.kwargs do not fit {MODULE}:add(a, b=10): "
         "got an unexpected keyword argument 'c'"),
        ("only_positional", {"a": 1}, f"config.kwargs do not fit {MODULE}:only_positional(a, /): "
         "'a' parameter is positional only, but was passed as a keyword"),
        ("describe", {"limit": 1, "context": 2}, f"config.kwargs holds 'context', the parameter "
         f"where {MODULE}:describe takes the context object"),
    ],
)  # fmt: skip
def test_arguments_that_do_not_fit_fail_before_the_call(context_for, function, kwargs, error):
    config = {"function": f"{MODULE}:{function}", "kwargs": kwargs}
    result = PythonNode().run(context_for(config, input={"name": "x"}))
    assert result.outcome == OutcomeKind.FAILED
    assert result.error == error
