"""The filters and tests of the Ansible-like dialect, beside Jinja2's own.

Every one is bounded as the sandbox's operators are: nothing builds a value past
MAX_BUILT_SIZE, parsers take at most MAX_PARSED_TEXT characters (from_yaml with the workflow
loader's alias and depth limits), and a regular expression runs for at most REGEX_SECONDS
(the `regex` module's own timeout: a catastrophic pattern stops, in any thread, even while
a shell node renders its command with no other limit around it).
"""

from __future__ import annotations

import base64
import binascii
import json
import posixpath
import shlex
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any, TypeVar

import regex
import yaml
from jinja2.exceptions import FilterArgumentError
from jinja2.sandbox import SecurityError

from spane_cli.workflow.expressions import MAX_BUILT_SIZE, check_weight
from spane_cli.workflow.loader import LoadFailed, load_document

# The longest text from_json and from_yaml parse: a workflow file's own limit.
MAX_PARSED_TEXT = 2 * 1024 * 1024
REGEX_SECONDS = 1.0
MAX_PATTERN = 10_000
# Fixed repeats (`a{1000}`) are expanded when the `regex` module compiles a pattern: nested
# ones multiply, and `((a{1000}){1000}){1000}` would take every byte of memory.
MAX_REPEAT_PRODUCT = 100_000
_REPEAT = regex.compile(r"\{(\d+)(?:,\d*)?\}")

_T = TypeVar("_T")


def _refuse_past(size: int, what: str) -> None:
    if size > MAX_BUILT_SIZE:
        raise SecurityError(f"{what} would hold {size:,} items, over {MAX_BUILT_SIZE:,}")


def _text(value: Any, what: str) -> str:
    """`value` as the text `{{ value }}` would print."""
    if isinstance(value, str):
        return value
    check_weight(value, what)
    return str(value)


def _plain(value: Any) -> Any:
    """Mappings and tuples as dicts and lists, for the serializers."""
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


def _parsed_text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise FilterArgumentError(f"{what} expects a string, got {type(value).__name__}")
    if len(value) > MAX_PARSED_TEXT:
        raise SecurityError(f"{what} parses at most {MAX_PARSED_TEXT:,} characters")
    return value


# -- shell and paths --------------------------------------------------------------------------


def quote(value: Any) -> str:
    """Shell quoting (shlex.quote): one word for /bin/sh, whatever the value holds. A list
    gives one quoted word per item; none gives ''."""
    if value is None:
        return "''"
    if isinstance(value, list | tuple):
        check_weight(value, "quote")
        return " ".join(quote(item) for item in value)
    quoted = shlex.quote(_text(value, "quote"))
    _refuse_past(len(quoted), "quote")
    return quoted


def string(value: Any) -> str:
    """Jinja2's `string`, bounded: str() of a value built from shared lists can be huge."""
    return _text(value, "string")


def basename(value: Any) -> str:
    return posixpath.basename(_text(value, "basename"))


def dirname(value: Any) -> str:
    return posixpath.dirname(_text(value, "dirname"))


# -- JSON, YAML, base64 -----------------------------------------------------------------------


def to_json(value: Any, indent: int | None = None, sort_keys: bool = False) -> str:
    check_weight(value, "to_json")
    return json.dumps(
        _plain(value), indent=indent, sort_keys=sort_keys, ensure_ascii=False, allow_nan=False
    )


def to_nice_json(value: Any, indent: int = 4, sort_keys: bool = True) -> str:
    return to_json(value, indent=indent, sort_keys=sort_keys)


def from_json(value: Any) -> Any:
    return json.loads(_parsed_text(value, "from_json"))


class _NoAliasDumper(yaml.SafeDumper):
    """A value used twice is written twice, not as an anchor and an alias."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def to_yaml(value: Any, indent: int = 2, sort_keys: bool = False) -> str:
    check_weight(value, "to_yaml")
    return yaml.dump(
        _plain(value),
        Dumper=_NoAliasDumper,
        indent=indent,
        sort_keys=sort_keys,
        default_flow_style=False,
        allow_unicode=True,
    )


def to_nice_yaml(value: Any, indent: int = 4, sort_keys: bool = True) -> str:
    return to_yaml(value, indent=indent, sort_keys=sort_keys)


def from_yaml(value: Any) -> Any:
    """Safe YAML, through the workflow loader: no Python tags, alias bombs and deep nesting
    refused, timestamps kept as the text written."""
    text = _parsed_text(value, "from_yaml")
    if all(not line.strip() or line.lstrip().startswith("#") for line in text.splitlines()):
        return None
    try:
        document = load_document("from_yaml", text)
    except LoadFailed as failed:
        raise FilterArgumentError(failed.problems[0].render()) from None
    if document.problems:
        raise FilterArgumentError(document.problems[0].render())
    return document.data


def b64encode(value: Any, encoding: str = "utf-8") -> str:
    text = _text(value, "b64encode")
    _refuse_past(len(text) * 4 // 3 + 4, "b64encode")
    return base64.b64encode(text.encode(encoding)).decode("ascii")


def b64decode(value: Any, encoding: str = "utf-8") -> str:
    try:
        raw = base64.b64decode(_text(value, "b64decode"), validate=True)
    except binascii.Error as exc:
        raise FilterArgumentError(f"b64decode: not base64: {exc}") from None
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError:
        raise FilterArgumentError(f"b64decode: the decoded bytes are not {encoding} text") from None


# -- regular expressions ----------------------------------------------------------------------


@lru_cache(maxsize=256)
def _compiled(pattern: str, ignorecase: bool, multiline: bool) -> regex.Pattern[str]:
    if len(pattern) > MAX_PATTERN:
        raise SecurityError(f"a regular expression may be {MAX_PATTERN:,} characters at most")
    product = 1
    for minimum in _REPEAT.findall(pattern):
        product *= max(int(minimum), 1)
        if product > MAX_REPEAT_PRODUCT:
            raise SecurityError(
                f"the fixed repeats of {pattern!r} multiply past {MAX_REPEAT_PRODUCT:,}"
            )
    flags = regex.V0 | (regex.IGNORECASE if ignorecase else 0)
    flags |= regex.MULTILINE if multiline else 0
    try:
        return regex.compile(pattern, flags)
    except regex.error as exc:
        raise FilterArgumentError(f"bad regular expression {pattern!r}: {exc}") from None


def _timed(run: Callable[[], _T], pattern: str) -> _T:
    try:
        return run()
    except TimeoutError:
        raise SecurityError(
            f"the regular expression {pattern!r} ran longer than {REGEX_SECONDS:g} s"
        ) from None


def regex_search(
    value: Any, pattern: str, *groups: str, ignorecase: bool = False, multiline: bool = False
) -> Any:
    """The first match, or none. With group arguments (`'\\\\1'`, `'\\\\g<name>'`), the list
    of those groups of the first match, as Ansible's filter gives."""
    compiled = _compiled(pattern, ignorecase, multiline)
    wanted = [_group_reference(group) for group in groups]
    text = _text(value, "regex_search")
    match = _timed(lambda: compiled.search(text, timeout=REGEX_SECONDS), pattern)
    if match is None:
        return None
    if not wanted:
        return match.group()
    try:
        return [match.group(group) for group in wanted]
    except IndexError:
        raise FilterArgumentError(f"{pattern!r} has no such group: {groups}") from None


def _group_reference(reference: str) -> int | str:
    named = regex.fullmatch(r"\\g<(\w+)>", reference)
    if named:
        name = named.group(1)
        return int(name) if name.isdigit() else name
    numbered = regex.fullmatch(r"\\(\d+)", reference)
    if numbered:
        return int(numbered.group(1))
    raise FilterArgumentError(f"regex_search: {reference!r} is not a group (use '\\\\1')")


def regex_replace(
    value: Any,
    pattern: str = "",
    replacement: str = "",
    ignorecase: bool = False,
    multiline: bool = False,
    count: int = 0,
) -> str:
    """Every match (or the first `count`) replaced; `\\1` and `\\g<name>` name groups."""
    compiled = _compiled(pattern, ignorecase, multiline)
    text = _text(value, "regex_replace")
    built = len(text)

    def substitute(match: regex.Match[str]) -> str:
        nonlocal built
        replaced = match.expand(replacement)
        built += len(replaced)
        _refuse_past(built, "regex_replace")
        return replaced

    try:
        return _timed(
            lambda: compiled.sub(substitute, text, count=count, timeout=REGEX_SECONDS), pattern
        )
    except (regex.error, IndexError) as exc:
        raise FilterArgumentError(
            f"regex_replace: bad replacement {replacement!r}: {exc}"
        ) from None


def regex_findall(
    value: Any, pattern: str, ignorecase: bool = False, multiline: bool = False
) -> list[Any]:
    """Every non-overlapping match: strings, or lists of the groups when there are groups."""
    compiled = _compiled(pattern, ignorecase, multiline)
    text = _text(value, "regex_findall")

    def collect() -> list[Any]:
        found: list[Any] = []
        built = 0
        for match in compiled.finditer(text, timeout=REGEX_SECONDS):
            if compiled.groups == 0:
                item: Any = match.group()
                built += len(item) + 1
            elif compiled.groups == 1:
                item = match.group(1) or ""
                built += len(item) + 1
            else:
                item = [group or "" for group in match.groups()]
                built += sum(len(group) for group in item) + 1
            _refuse_past(built, "regex_findall")
            found.append(item)
        return found

    return _timed(collect, pattern)


def regex_escape(value: Any) -> str:
    return regex.escape(_text(value, "regex_escape"))


def match(value: Any, pattern: str = "", ignorecase: bool = False, multiline: bool = False) -> bool:
    """Test: the pattern matches at the start of the value."""
    compiled = _compiled(pattern, ignorecase, multiline)
    text = _text(value, "match")
    return _timed(lambda: compiled.match(text, timeout=REGEX_SECONDS), pattern) is not None


def search(
    value: Any, pattern: str = "", ignorecase: bool = False, multiline: bool = False
) -> bool:
    """Test: the pattern matches somewhere in the value."""
    compiled = _compiled(pattern, ignorecase, multiline)
    text = _text(value, "search")
    return _timed(lambda: compiled.search(text, timeout=REGEX_SECONDS), pattern) is not None


FILTERS: dict[str, Callable[..., Any]] = {
    "quote": quote,
    "basename": basename,
    "string": string,
    "dirname": dirname,
    "to_json": to_json,
    "to_nice_json": to_nice_json,
    "from_json": from_json,
    "to_yaml": to_yaml,
    "to_nice_yaml": to_nice_yaml,
    "from_yaml": from_yaml,
    "b64encode": b64encode,
    "b64decode": b64decode,
    "regex_search": regex_search,
    "regex_replace": regex_replace,
    "regex_findall": regex_findall,
    "regex_escape": regex_escape,
}

TESTS: dict[str, Callable[..., bool]] = {"match": match, "search": search}
