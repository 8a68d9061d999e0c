"""Templates that would fail at run time fail `spane validate` instead, at the line and column
of the text at fault: unknown filters and tests, and shell syntax that Jinja reads as its own
(with the way to write it)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from helpers import final_document, run_spane

FLOW = """\
version: 1
name: bad-templates
nodes:
  block:
    type: shell
    config:
      run: |
        echo start
        echo {{ input.x | nosuchfilter }}
        test {{ input.y is nosuchtest }}
  length:
    type: shell
    config: {run: "echo ${#HOME}"}
  swallowed:
    type: shell
    config:
      run: |
        n=${#HOME}
        echo $n #} done
  go_template:
    type: shell
    config: {run: "docker inspect -f '{{.State.Running}}' web"}
  printf:
    type: shell
    config: {run: "printf '{%s}' x"}
  bare:
    type: transform
    when: "input.x | quote == 'a' and input.y is matchh('x')"
    config: {output: "{{ [1] | map('nosuch') | list }} {{ [1] | select('oddd') | list }}"}
  awk:
    type: shell
    config: {run: "awk '{{print $1}}'"}
"""

# (line, column, the message after "node ...: ")
EXPECTED = [
    (9, 27, "unknown filter 'nosuchfilter'"),
    (10, 28, "unknown test 'nosuchtest'"),
    (13, 25, "Missing end of comment tag (`{#` starts a Jinja comment: for the shell's ${#VAR} "
     "write ${{ '{#' }}VAR}, or put the script between {% raw %} and {% endraw %})"),
    (18, 11, "`${#` starts a Jinja comment that hides the text up to the next `#}`"),
    (22, 39, "unexpected '.' (`{{` starts a Jinja expression: write a Go template"),
    (25, 28, "Encountered unknown tag 's'. (`{%` starts a Jinja tag: for a literal {% write "
     "{{ '{%' }}"),
    (28, 50, "unknown test 'matchh' (did you mean 'match'?)"),
    (29, 37, "unknown filter 'nosuch'"),
    (29, 73, "unknown test 'oddd' (did you mean 'odd'?)"),
    (32, 19, "(if this is shell syntax, not a template, put it between {% raw %} and "
     "{% endraw %})"),
]  # fmt: skip


def test_every_template_problem_is_reported_at_its_own_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "flow.yaml"
    path.write_text(FLOW)
    result = run_spane("validate", str(path))
    assert result.exit_code == 2
    lines = result.stdout.strip().splitlines() or result.stderr.strip().splitlines()
    assert len(lines) == len(EXPECTED), "\n".join(lines)
    for line, (row, column, message) in zip(lines, EXPECTED, strict=True):
        assert line.startswith(f"{path}:{row}:{column}: node "), line
        assert message in line, line


@pytest.mark.parametrize(
    "template",
    [
        "{{ x | nosuchfilter }}",
        "{% for i in x %}{{ i | nosuchfilter }}{% endfor %}",
        "{% if false %}{{ x | nosuchfilter }}{% endif %}",
        "{% filter nosuchfilter %}x{% endfilter %}",
        "{{ x | map('nosuchfilter') | list }}",
        "{{ x | selectattr('a', 'nosuchtest') | list }}",
    ],
)
def test_an_unknown_name_fails_validation_wherever_it_stands(tmp_path: Path, template: str) -> None:
    path = tmp_path / "flow.yaml"
    node = f"  a: {{type: transform, config: {{output: {template!r}}}}}\n"
    path.write_text(f"version: 1\nname: x\nnodes:\n{node}")
    result = run_spane("validate", str(path))
    assert result.exit_code == 2
    assert "unknown filter 'nosuchfilter'" in result.output or "unknown test 'nosuchtest'" in (
        result.output
    )


def test_the_written_forms_the_hints_give_validate_and_run(tmp_path: Path) -> None:
    path = tmp_path / "flow.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            version: 1
            name: shell-isms
            inputs:
              word: {type: string, default: "it's"}
            nodes:
              show:
                type: shell
                config:
                  env: {WORD: abcd}
                  run: |
                    echo ${{ '{#' }}WORD}
                    {% raw %}echo ${#WORD} '{{.Go}}' '{%s}'{% endraw %}
                    printf '{{ '{%' }}s}\\n' x
                    echo {{ input.word | quote }} {{ input.word | regex_replace("'", "") }}
            """
        )
    )
    assert run_spane("validate", str(path)).exit_code == 0
    result = run_spane("run", "--local", "-o", "json", str(path))
    assert result.exit_code == 0, result.output
    stdout = final_document(result.stdout)["nodes"]["show"]["output"]["stdout"]
    assert stdout == "4\n4 {{.Go}} {%s}\n{x}\nit's its\n"


def test_a_syntax_error_in_a_block_is_reported_on_its_own_line(tmp_path: Path) -> None:
    path = tmp_path / "flow.yaml"
    path.write_text(
        "version: 1\nname: x\nnodes:\n  a:\n    type: shell\n    config:\n      run: |\n"
        "        echo one\n        echo two\n        echo {{ input.x + }}\n"
    )
    result = run_spane("validate", str(path))
    assert result.exit_code == 2
    assert result.stdout.startswith(f"{path}:10:9: node 'a' field config.run: expression does not")


def test_the_same_unknown_filter_on_two_lines_is_two_problems(tmp_path: Path) -> None:
    path = tmp_path / "flow.yaml"
    path.write_text(
        "version: 1\nname: x\nnodes:\n  b:\n    type: transform\n    config:\n      output: |\n"
        "        {{ 1 | nosuch }}\n        {% if true %}\n        {{ 2 | nosuch }}\n"
        "        {% endif %}\n"
    )
    lines = run_spane("validate", str(path)).stdout.splitlines()
    assert [line.split(": ")[0] for line in lines] == [f"{path}:8:16", f"{path}:10:16"]
