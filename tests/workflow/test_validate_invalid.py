"""Invalid workflows: each problem is reported as FILE:LINE:COL: message on the right line."""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

import pytest
from helpers import Result, run_spane

from spane_cli.nodes.registry import third_party_config_schemas
from spane_cli.workflow.validate import validate_file

# (id, file text, [(line, [substrings of that line's message]), ...])
CASES: list[tuple[str, str, list[tuple[int, list[str]]]]] = [
    (
        "controls-that-never-apply",
        """\
        version: 1
        name: x
        rate_limits:
          host:api.example.com: 5/s
          host:other.example.com: 5/s
          workflow: 5/hour-ish
        circuit_breakers:
          api.example.com:8443: {failures: 3}
        nodes:
          a: {type: http, config: {url: "https://api.example.com/items/{{ 1 }}"}}
          b: {type: http, config: {url: "{{ 'https://other.example.com/' }}"}}
        """,
        [
            (5, ["'other.example.com'", "never applies", "template"]),
            (6, ["5/hour-ish"]),
            (8, ["'api.example.com:8443'", "breaker never applies"]),
        ],
    ),
    (
        "yaml-syntax",
        """\
        version: 1
        name: x
        nodes:
          a:
            type: noop
            config: {x: 1
          b: {type: noop}
        """,
        [(7, ["YAML syntax error", "line 6"])],
    ),
    (
        "unclosed-at-end",
        """\
        version: 1
        name: x
        nodes:
          a: {type: noop, needs: [b
        """,
        [(4, ["YAML syntax error", "never closed"])],
    ),
    (
        "tab",
        "version: 1\nname: x\nnodes:\n  a:\n\ttype: noop\n",
        [(5, ["tab character", "spaces"])],
    ),
    (
        "duplicate-key",
        """\
        version: 1
        name: x
        nodes:
          a:
            type: noop
            type: shell
        """,
        [(6, ["duplicate key 'type'", "line 5"])],
    ),
    (
        "wrong-types",
        """\
        version: 1
        name: x
        nodes:
          a:
            type: noop
            needs: b
            continue_on_fail: "yes"
          b:
            type: noop
            max_parallel: two
            foreach: [1]
        """,
        [
            (6, ["node 'a' field needs", "expected a list", "string"]),
            (7, ["continue_on_fail", "expected a boolean"]),
            (10, ["max_parallel", "expected an integer"]),
        ],
    ),
    (
        "unknown-type-and-field",
        """\
        version: 1
        name: x
        nodes:
          a:
            type: shel
            config: {run: echo}
          b:
            type: noop
            need: [a]
          c:
            type: frobnicate
        """,
        [
            (5, ["unknown node type 'shel'", "did you mean 'shell'"]),
            (9, ["unknown field 'need'", "did you mean 'needs'"]),
            (11, ["unknown node type 'frobnicate'"]),
        ],
    ),
    (
        "unknown-config-and-top-level-fields",
        """\
        version: 1
        name: x
        node: {}
        nodes:
          a:
            type: shell
            config: {run: echo, cwdd: /tmp}
        """,
        [
            (3, ["unknown field 'node'", "did you mean 'nodes'"]),
            (7, ["unknown field 'cwdd'", "did you mean 'cwd'"]),
        ],
    ),
    (
        "unknown-needs",
        """\
        version: 1
        name: x
        nodes:
          extract: {type: noop}
          load:
            type: noop
            needs: [extract, extrct, zzz]
        """,
        [
            (7, ["node 'load' needs unknown node 'extrct'", "did you mean 'extract'"]),
            (7, ["node 'load' needs unknown node 'zzz'"]),
        ],
    ),
    (
        "cycle",
        """\
        version: 1
        name: x
        nodes:
          start: {type: noop}
          a:
            type: noop
            needs: [start, c]
          b:
            type: noop
            needs: [a]
          c:
            type: noop
            needs: [b]
        """,
        [(5, ["cycle in needs", "a -> b -> c -> a"])],
    ),
    (
        "self-cycle",
        "version: 1\nname: x\nnodes:\n  a: {type: noop, needs: [a]}\n",
        [(4, ["cycle in needs: a -> a"])],
    ),
    (
        "branch-targets",
        """\
        version: 1
        name: x
        nodes:
          route:
            type: branch
            config:
              cases:
                - when: "input.n > 1"
                  next: [big]
              default: [smal]
          big: {type: noop}
          small: {type: noop, needs: [route]}
        """,
        [
            (9, ["branch 'route' targets 'big'", "does not need 'route'", "add it to needs"]),
            (10, ["branch 'route' targets unknown node 'smal'", "did you mean 'small'"]),
        ],
    ),
    (
        "bad-durations",
        """\
        version: 1
        name: x
        timeout: 5 minutes
        defaults:
          timeout: forever
        nodes:
          a:
            type: noop
            timeout: 1x
            retry: {attempts: 2, delay: soon}
          wait:
            type: delay
            config: {duration: "-1"}
        """,
        [
            (3, ["invalid duration '5 minutes' for timeout", "PT5M"]),
            (5, ["invalid duration 'forever' for defaults.timeout"]),
            (9, ["invalid duration '1x' for node 'a' field timeout"]),
            (10, ["invalid duration 'soon' for node 'a' field retry.delay"]),
            (13, ["invalid duration '-1' for node 'wait' field config.duration"]),
        ],
    ),
    (
        "infinite-numbers",
        """\
        version: 1
        name: x
        nodes:
          a:
            type: noop
            timeout: .inf
            retry: {attempts: 2, delay: .nan}
        """,
        [(6, ["node 'a' field timeout", "finite"]), (7, ["retry.delay", "finite"])],
    ),
    (
        "bad-expressions",
        """\
        version: 1
        name: x
        output: "{{ nodes.a.output }"
        nodes:
          a:
            type: noop
            when: "x ==="
            foreach: "{{ [1, }}"
          b:
            type: shell
            config: {run: "echo {{ x + }}"}
          r:
            type: branch
            config:
              cases:
                - when: "a and"
                  next: []
        """,
        [
            (3, ["output: expression does not parse"]),
            (7, ["node 'a' field when: expression does not parse"]),
            (8, ["node 'a' field foreach: expression does not parse"]),
            (11, ["node 'b' field config.run: expression does not parse"]),
            (16, ["node 'r' field config.cases[0].when: expression does not parse"]),
        ],
    ),
    (
        "expression-unknown-node",
        """\
        version: 1
        name: x
        nodes:
          extract: {type: noop}
          load:
            type: noop
            needs: [extract]
            when: "nodes.extrakt.status == 'succeeded'"
        """,
        [(8, ["refers to unknown node 'extrakt'", "did you mean 'extract'"])],
    ),
    (
        "config-schemas",
        """\
        version: 1
        name: x
        nodes:
          sh:
            type: shell
            config: {env: {A: b}}
          web:
            type: http
            config: {method: GET}
          py:
            type: python
            config: {function: "etl.steps.transform"}
          wait:
            type: delay
            config: {}
        """,
        [
            (6, ["node 'sh' field config", "exactly one of run or args"]),
            (9, ["node 'web' field config", "missing required field 'url'"]),
            (12, ["node 'py' field config.function", "package.module:function"]),
            (15, ["node 'wait' field config", "exactly one of duration or until"]),
        ],
    ),
    (
        "missing-subworkflow",
        """\
        version: 1
        name: x
        nodes:
          child:
            type: workflow
            config: {workflow: sub/missing.yaml}
        """,
        [(6, ["sub-workflow file 'sub/missing.yaml' does not exist"])],
    ),
    (
        "python-tag",
        "version: 1\nname: x\nnodes: !!python/object/apply:os.system ['echo hi']\n",
        [(3, ["unsupported YAML tag", "python/object/apply:os.system"])],
    ),
    ("top-level-list", "- version: 1\n- name: x\n", [(1, ["must be a mapping", "list"])]),
    ("top-level-scalar", "just text\n", [(1, ["must be a mapping", "string"])]),
    (
        "workflow-name",
        "version: 1\nname: Nightly ETL\nnodes:\n  a: {type: noop}\n",
        [(2, ["workflow name 'Nightly ETL' must match", "lowercase"])],
    ),
    (
        "version-2",
        "version: 2\nname: x\nnodes:\n  a: {type: noop}\n",
        [(1, ["unsupported version 2", "only version 1"])],
    ),
    (
        "missing-required",
        "name: x\nnodes:\n  a: {config: {}}\n",
        [(1, ["missing required field 'version'"]), (3, ["node 'a'", "'type'"])],
    ),
    (
        "no-nodes",
        "version: 1\nname: x\nnodes: {}\n",
        [(3, ["at least one node"])],
    ),
    (
        "invalid-ids",
        """\
        version: 1
        name: x
        inputs:
          ok: {type: string}
          2nd: {type: string}
        nodes:
          a: {type: noop}
          load db: {type: noop}
        """,
        [(5, ["invalid id '2nd' in inputs"]), (8, ["invalid id 'load db' in nodes"])],
    ),
    (
        "trigger-typo",
        "version: 1\nname: x\nnodes:\n  a: {type: noop, trigger: al_done}\n",
        [(4, ["'al_done' is not one of", "did you mean 'all_done'"])],
    ),
    (
        "max-parallel-without-foreach",
        "version: 1\nname: x\nnodes:\n  a:\n    type: noop\n    max_parallel: 2\n",
        [(6, ["max_parallel needs foreach"])],
    ),
    (
        "inputs",
        """\
        version: 1
        name: x
        inputs:
          a: {type: text}
          b: {type: integer, default: many}
        nodes:
          n: {type: noop}
        """,
        [(4, ["input 'a' field type", "not a JSON type"]), (5, ["input 'b'", "default 'many'"])],
    ),
    (
        "two-independent-errors",
        """\
        version: 1
        name: x
        nodes:
          a:
            type: noop
            timeout: 5 minutes
          b:
            type: noop
            needs: [c]
        """,
        [(6, ["invalid duration"]), (9, ["needs unknown node 'c'"])],
    ),
    (
        "exit-handler-edges",
        """\
        version: 1
        name: x
        nodes:
          a: {type: noop}
          b: {type: noop, needs: [notify]}
          notify: {type: noop, on_exit: true, needs: [a]}
          report: {type: noop, on_exit: true, trigger: all_success}
        """,
        [
            (5, ["node 'b' needs exit handler 'notify'", "after every other node"]),
            (6, ["exit handler 'notify' needs 'a', which is not an exit handler"]),
            (7, ["exit handler 'report' has no needs", "use when: over workflow.status"]),
        ],
    ),
    (
        "only-exit-handlers",
        """\
        version: 1
        name: x
        nodes:
          notify: {type: noop, on_exit: true}
        """,
        [(4, ["every node is an exit handler"])],
    ),
    (
        "retry-when",
        """\
        version: 1
        name: x
        defaults:
          retry: {attempts: 3, when: "code == 503"}
        nodes:
          a:
            type: http
            config: {url: "http://localhost/"}
            retry: {attempts: 3, when: "status =="}
          b:
            type: noop
            retry: {attempts: 2, when: "stauts == 503 and nodes.a.status"}
        """,
        [
            (4, ["defaults.retry.when", "unknown name 'code'", "exit_code"]),
            (9, ["node 'a' field retry.when", "does not parse"]),
            (12, ["unknown name 'nodes'", "it can use error, exit_code, status, attempt"]),
            (12, ["unknown name 'stauts'", "did you mean 'status'"]),
        ],
    ),
    (
        "fail-fast-and-on-exit-types",
        """\
        version: 1
        name: x
        fail_fast: "yes"
        nodes:
          a: {type: noop, on_exit: 1}
          b: {type: noop}
        """,
        [(3, ["fail_fast", "boolean"]), (5, ["on_exit", "boolean"])],
    ),
]


def parse_problems(result: Result, file: str) -> list[tuple[int, str]]:
    """(line, message) of every `FILE:LINE:COL: message` line on stdout."""
    problems = []
    for row in result.stdout.splitlines():
        assert row.startswith(f"{file}:"), row
        line, column, message = row[len(file) + 1 :].split(":", 2)
        assert int(column) >= 1
        problems.append((int(line), message.strip()))
    return problems


def assert_invalid(file: str, expected: list[tuple[int, list[str]]]) -> Result:
    result = run_spane("validate", file)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    problems = parse_problems(result, file)
    for line, parts in expected:
        matching = [m for n, m in problems if n == line and all(p in m for p in parts)]
        assert matching, f"no problem on line {line} with {parts}; got {problems}"
    return result


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_invalid_file_is_reported_on_its_line(
    tmp_path: Path, text: str, expected: list[tuple[int, list[str]]]
) -> None:
    file = tmp_path / "flow.yaml"
    file.write_text(textwrap.dedent(text), encoding="utf-8")
    result = assert_invalid(str(file), expected)
    # validate_file agrees with the command and never builds a half-valid workflow.
    direct = validate_file(str(file), third_party_config_schemas())
    assert direct.workflow is None
    assert [p.render() for p in direct.problems] == result.stdout.splitlines()


def test_problems_are_sorted_by_line(tmp_path: Path) -> None:
    file = tmp_path / "flow.yaml"
    file.write_text(textwrap.dedent(dict((c[0], c[1]) for c in CASES)["bad-durations"]))
    lines = [n for n, _ in parse_problems(run_spane("validate", str(file)), str(file))]
    assert lines == sorted(lines) and len(lines) == 5


def write(path: Path, text: str | bytes) -> str:
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(textwrap.dedent(text), encoding="utf-8")
    return str(path)


def test_subworkflow_reference_cycle_between_two_files(tmp_path: Path) -> None:
    one = write(
        tmp_path / "one.yaml",
        "version: 1\nname: one\nnodes:\n  call:\n    type: workflow\n"
        "    config: {workflow: two.yaml}\n",
    )
    write(
        tmp_path / "two.yaml",
        "version: 1\nname: two\nnodes:\n  back:\n    type: workflow\n"
        "    config: {workflow: ./one.yaml}\n",
    )
    started = time.monotonic()
    result = run_spane("validate", one)
    assert time.monotonic() - started < 5
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert f"{one}:6:" in result.stdout
    assert "sub-workflow 'two.yaml' is invalid" in result.stdout
    cycle = [row for row in result.stdout.splitlines() if "reference cycle" in row]
    assert cycle and "one.yaml -> two.yaml -> one.yaml" in cycle[0]
    assert cycle[0].startswith(f"{tmp_path / 'two.yaml'}:6:")


def test_invalid_subworkflow_problems_are_shown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "flows" / "sub").mkdir(parents=True)
    write(
        tmp_path / "flows" / "parent.yaml",
        "version: 1\nname: p\nnodes:\n  c:\n    type: workflow\n"
        "    config: {workflow: sub/child.yaml}\n",
    )
    write(
        tmp_path / "flows" / "sub" / "child.yaml",
        "version: 1\nname: c\nnodes:\n  a: {type: nope}\n",
    )
    monkeypatch.chdir(tmp_path)
    result = run_spane("validate", "flows/parent.yaml")
    assert result.exit_code == 2
    assert result.stdout.splitlines() == [
        "flows/parent.yaml:6:24: sub-workflow 'sub/child.yaml' is invalid (1 problem)",
        "flows/sub/child.yaml:4:13: unknown node type 'nope' in node 'a' (did you mean 'noop'?)",
    ]


@pytest.mark.parametrize(
    ("content", "line", "message"),
    [
        (b"version: 1\nname: x\ndescription: caf\xe9\n", 3, "not UTF-8"),
        (b"", 1, "empty file"),
        (b"# just a comment\n#\n", 1, "empty file"),
        (b"version: 1\nname: x\n# " + b"x" * (3 * 1024 * 1024) + b"\n", 1, "larger than"),
    ],
    ids=["non-utf8", "empty", "comment-only", "huge"],
)
def test_unusable_file_contents(tmp_path: Path, content: bytes, line: int, message: str) -> None:
    file = write(tmp_path / "flow.yaml", content)
    result = run_spane("validate", file)
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert result.stdout.startswith(f"{file}:{line}:")
    assert message in result.stdout


def test_alias_bomb_fails_in_under_a_second(tmp_path: Path) -> None:
    rows = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for previous, name in zip("abcdefgh", "bcdefghi", strict=True):
        rows.append(f"{name}: &{name} [{','.join([f'*{previous}'] * 9)}]")
    file = write(tmp_path / "bomb.yaml", "\n".join(rows) + "\n")
    started = time.monotonic()
    result = run_spane("validate", file)
    assert time.monotonic() - started < 1.0
    assert result.exit_code == 2
    assert result.stdout.startswith(f"{file}:1:")
    assert "alias bomb" in result.stdout


def test_directory_and_missing_file(tmp_path: Path) -> None:
    result = run_spane("validate", str(tmp_path), str(tmp_path / "absent.yaml"))
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert result.stdout.splitlines() == [
        f"{tmp_path}:1:1: is a directory, not a workflow file",
        f"{tmp_path / 'absent.yaml'}:1:1: no such file",
    ]
