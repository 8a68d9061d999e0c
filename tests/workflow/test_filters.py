"""The Ansible-like filters and tests in templates: what they give, and the bounds a hostile
template meets (huge values, alias bombs, Python tags, catastrophic regular expressions)."""

from __future__ import annotations

import shlex
import subprocess
import threading
import time
from typing import Any

import pytest

from spane_cli.workflow.expressions import ExpressionError, render_value
from spane_cli.workflow.filters import MAX_PARSED_TEXT, REGEX_SECONDS

SCOPE: dict[str, Any] = {
    "name": 'it\'s $(rm -rf /); `x` "y"',
    "files": ["a b.txt", "c;d"],
    "data": {"k": [1, 2], "s": "é"},
    "log": "id=42 user=ann id=7",
    "path": "/var/log/app/today.log",
}

CASES = [
    ("{{ data | to_json }}", '{"k": [1, 2], "s": "é"}'),
    ("{{ data | to_json(sort_keys=true, indent=1) }}", '{\n "k": [\n  1,\n  2\n ],\n "s": "é"\n}'),
    ("{{ data | to_nice_json }}", '{\n    "k": [\n        1,\n        2\n    ],\n    "s": "é"\n}'),
    ("{{ '{\"a\": [1, null]}' | from_json }}", {"a": [1, None]}),
    ("{{ data | to_yaml }}", "k:\n- 1\n- 2\ns: é\n"),
    ("{{ 'a: 1\nb: [x, 2026-01-02]' | from_yaml }}", {"a": 1, "b": ["x", "2026-01-02"]}),
    ("{{ '' | from_yaml }}", None),
    ("{{ log | regex_search('id=\\\\d+') }}", "id=42"),
    (r"{{ log | regex_search('id=(\\d+) user=(?P<who>\\w+)', '\\1', '\\g<who>') }}", ["42", "ann"]),
    ("{{ log | regex_search('nothing') }}", None),
    ("{{ log | regex_search('ID', ignorecase=true) }}", "id"),
    ("{{ log | regex_findall('id=\\\\d+') }}", ["id=42", "id=7"]),
    ("{{ log | regex_findall('id=(\\\\d+)') }}", ["42", "7"]),
    (r"{{ log | regex_findall('(\\w+)=(\\w+)') }}", [["id", "42"], ["user", "ann"], ["id", "7"]]),
    ("{{ log | regex_replace('id=(\\\\d+)', 'ID<\\\\1>') }}", "ID<42> user=ann ID<7>"),
    ("{{ log | regex_replace('id', 'ID', count=1) }}", "ID=42 user=ann id=7"),
    ("{{ 'a.b' | regex_escape }}", "a\\.b"),
    ("{{ 'héllo' | b64encode }}", "aMOpbGxv"),
    ("{{ 'aMOpbGxv' | b64decode }}", "héllo"),
    ("{{ path | basename }}", "today.log"),
    ("{{ path | dirname }}", "/var/log/app"),
    ("{{ log is match('id=') }}", True),
    ("{{ log is match('user') }}", False),
    ("{{ log is search('user=a') }}", True),
    ("{{ log is not search('bob') }}", True),
    ("{{ files | select('search', ';') | list }}", ["c;d"]),
    ("{{ none | quote }}", "''"),
    ("{{ 5 | quote }}", "5"),
]  # fmt: skip


@pytest.mark.parametrize(("template", "expected"), CASES)
def test_filter_gives(template: str, expected: Any) -> None:
    assert render_value(template, SCOPE) == expected


@pytest.mark.parametrize("value", [SCOPE["name"], "", "-n", "a\nb", "ünï"])
def test_quote_makes_one_shell_word_of_anything(value: str) -> None:
    command = render_value("printf '%s' {{ value | quote }}", {"value": value})
    printed = subprocess.run(["/bin/sh", "-c", command], capture_output=True, text=True)
    assert printed.stdout == value


def test_quote_gives_one_word_per_item_of_a_list() -> None:
    words = render_value("{{ files | quote }}", SCOPE)
    assert shlex.split(words) == ["a b.txt", "c;d"]


HOSTILE = {
    "catastrophic-regex": "{{ ('a' * 5000 + '!') | regex_search('(a|aa)+$') }}",
    "catastrophic-test": "{{ ('a' * 5000 + '!') is match('(a|aa)+$') }}",
    "catastrophic-replace": "{{ ('a' * 5000 + '!') | regex_replace('(a|aa)+$', '') }}",
    "catastrophic-findall": "{{ ('a' * 5000 + '!') | regex_findall('(a|aa)+$') }}",
    "nested-fixed-repeats": "{{ 'x' | regex_search('((a{1000}){1000}){1000}') }}",
    "replace-past-the-limit": "{{ ('a' * 100000) | regex_replace('', 'b' * 200) }}",
    "shared-list-to-json": "{% set a = ['x' * 10000] * 1000 %}{{ ([a] * 1000) | to_json }}",
    "shared-list-to-yaml": "{% set a = ['x' * 10000] * 1000 %}{{ ([a] * 1000) | to_yaml }}",
    "shared-list-quote": "{% set a = ['x' * 10000] * 1000 %}{{ ([a] * 1000) | quote }}",
    "shared-list-string": "{% set a = ['x' * 10000] * 1000 %}{{ ([a] * 1000) | string }}",
    "shared-list-printed": "{% set a = ['x' * 10000] * 1000 %}{{ [a] * 1000 }} and text",
    "shared-list-native": "{{ [['x' * 10000] * 1000] * 1000 }}",
    "huge-from-json": "{{ ('[' + '0,' * 2000000 + '0]') | from_json }}",
    "yaml-alias-bomb": "{{ bomb | from_yaml }}",
    "yaml-python-tag": "{{ '!!python/object/apply:os.system [\"true\"]' | from_yaml }}",
    "bad-base64": "{{ '!!' | b64decode }}",
    "base64-of-binary": "{{ '/w==' | b64decode }}",
    "bad-pattern": "{{ 'x' | regex_search('(') }}",
    "bad-group": "{{ 'x' | regex_search('x', '\\\\2') }}",
}

BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{n}: &{n} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
    for p, n in zip("abcdefgh", "bcdefghi", strict=True)
)


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_hostile_template_fails_quickly_with_one_line(case: str) -> None:
    started = time.monotonic()
    with pytest.raises(ExpressionError) as raised:
        render_value(HOSTILE[case], {"bomb": BOMB})
    assert time.monotonic() - started < REGEX_SECONDS + 4
    assert "\n" not in str(raised.value).split(" in ")[0]


def test_the_parsers_refuse_text_past_their_limit() -> None:
    with pytest.raises(ExpressionError, match="parses at most"):
        render_value("{{ text | from_json }}", {"text": " " * (MAX_PARSED_TEXT + 1)})


def test_a_catastrophic_regex_stops_in_a_thread_too() -> None:
    """The extra workers of `run --local` are threads, where no signal can stop C code."""
    outcome: list[str] = []

    def render() -> None:
        try:
            render_value("{{ text | regex_search('(a|aa)+$') }}", {"text": "a" * 5000 + "!"})
        except ExpressionError as exc:
            outcome.append(str(exc))

    thread = threading.Thread(target=render, daemon=True)
    thread.start()
    thread.join(REGEX_SECONDS + 10)
    assert not thread.is_alive()
    assert outcome and "ran longer than 1 s" in outcome[0]
