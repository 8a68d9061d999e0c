"""The YAML loader: locations, duplicate keys, unsafe tags, alias bombs and unreadable files."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from spane_cli.workflow.loader import MAX_FILE_BYTES, LoadFailed, load_document

GOOD = """\
version: 1
name: demo
nodes:
  first:
    type: noop
  second:
    type: shell
    needs: [first]
    config:
      run: echo hi
"""


def write(tmp_path: Path, text: str | bytes, name: str = "flow.yaml") -> str:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return str(path)


def failure(file: str) -> tuple[int, int, str]:
    """The first problem of a file the loader cannot take as it is: either it cannot be read
    at all (LoadFailed), or it gives data with problems attached (duplicate keys, bad tags),
    which validation reports together with the rest."""
    try:
        problems = load_document(file).problems
    except LoadFailed as failed:
        problems = failed.problems
    assert problems, "the loader found no problem"
    first = problems[0]
    assert first.file == file
    return first.line, first.column, first.message


def test_loads_plain_data_and_remembers_lines(tmp_path: Path) -> None:
    doc = load_document(write(tmp_path, GOOD))
    assert doc.data["nodes"]["second"] == {
        "type": "shell",
        "needs": ["first"],
        "config": {"run": "echo hi"},
    }
    assert doc.locations.of(("nodes", "second"), key=True) == (6, 3)
    assert doc.locations.of(("nodes", "second", "needs", 0)) == (8, 13)
    assert doc.locations.of(("nodes", "second", "config", "run")) == (10, 12)
    # An unknown path falls back to its nearest known ancestor.
    assert doc.locations.of(("nodes", "second", "config", "missing")) == (10, 7)


def test_timestamps_stay_strings_and_merge_keys_work(tmp_path: Path) -> None:
    text = GOOD + "description: 2026-01-02\nbase: &b {type: noop, queue: q}\nother: {<<: *b}\n"
    doc = load_document(write(tmp_path, text))
    assert doc.data["description"] == "2026-01-02"
    assert doc.data["other"] == {"type": "noop", "queue": "q"}


def test_a_duplicate_key_does_not_hide_other_problems(tmp_path: Path) -> None:
    from spane_cli.workflow.validate import validate_file

    text = GOOD + "  first:\n    type: noop\n  broken:\n    type: noop\n    needs: [nowhere]\n"
    messages = [p.message for p in validate_file(write(tmp_path, text), {}).problems]
    assert any("duplicate key 'first'" in m for m in messages)
    assert any("unknown node 'nowhere'" in m for m in messages)


def test_duplicate_key_names_both_lines(tmp_path: Path) -> None:
    text = GOOD + "  first:\n    type: noop\n"
    line, _, message = failure(write(tmp_path, text))
    assert line == 11
    assert "duplicate key 'first'" in message
    assert "line 4" in message


def test_yaml_syntax_error_has_its_line(tmp_path: Path) -> None:
    line, column, message = failure(write(tmp_path, "version: 1\nname: x\nnodes:\n  a: b: c\n"))
    assert (line, column) == (4, 7)
    assert message.startswith("YAML syntax error:")


def test_unclosed_bracket_points_where_it_opens(tmp_path: Path) -> None:
    text = "version: 1\nname: x\nnodes:\n  a: {type: noop\n"
    line, _, message = failure(write(tmp_path, text))
    assert line == 4
    assert "never closed" in message


def test_tab_indentation_is_named(tmp_path: Path) -> None:
    line, _, message = failure(write(tmp_path, "version: 1\nnodes:\n  a:\n\ttype: noop\n"))
    assert line == 4
    assert "tab" in message and "spaces" in message


def test_python_tag_is_refused_not_run(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    text = f"version: 1\nname: x\nnodes: !!python/object/apply:os.system ['touch {marker}']\n"
    line, _, message = failure(write(tmp_path, text))
    assert line == 3
    assert "unsupported YAML tag" in message and "python/object/apply" in message
    assert not marker.exists()


def test_custom_tag_is_refused(tmp_path: Path) -> None:
    line, _, message = failure(write(tmp_path, "version: 1\nname: !secret x\nnodes: {}\n"))
    assert line == 2
    assert "!secret" in message


def test_alias_bomb_fails_fast(tmp_path: Path) -> None:
    rows = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for previous, name in zip("abcdefgh", "bcdefghi", strict=True):
        rows.append(f"{name}: &{name} [{','.join([f'*{previous}'] * 9)}]")
    file = write(tmp_path, "\n".join(rows) + "\n")
    started = time.monotonic()
    _, _, message = failure(file)
    # Expanded, it would take minutes and gigabytes; refused, it takes milliseconds (the bound
    # leaves room for a loaded machine).
    assert time.monotonic() - started < 5.0
    assert "alias bomb" in message


def test_deep_nesting_is_refused(tmp_path: Path) -> None:
    file = write(tmp_path, "version: 1\noutput: " + "[" * 200 + "]" * 200 + "\n")
    _, _, message = failure(file)
    assert "nested deeper" in message


def test_huge_file_is_refused_without_parsing(tmp_path: Path) -> None:
    text = "version: 1\nname: x\n# " + "x" * (MAX_FILE_BYTES + 10) + "\n"
    _, _, message = failure(write(tmp_path, text))
    assert "larger than 2048 KiB" in message


def test_non_utf8_byte_is_located(tmp_path: Path) -> None:
    file = write(tmp_path, b"version: 1\nname: x\ndescription: caf\xe9\n")
    assert failure(file) == (3, 17, "not UTF-8: byte 0xe9 cannot be decoded")


@pytest.mark.parametrize("text", ["", "\n\n", "   \n", "# only a comment\n\n# another\n"])
def test_empty_or_comment_only_file(tmp_path: Path, text: str) -> None:
    line, _, message = failure(write(tmp_path, text))
    assert line == 1
    assert "empty file" in message


def test_directory_and_missing_file(tmp_path: Path) -> None:
    assert failure(str(tmp_path))[2] == "is a directory, not a workflow file"
    assert failure(str(tmp_path / "nope.yaml"))[2] == "no such file"


def test_second_document_is_refused(tmp_path: Path) -> None:
    line, _, message = failure(write(tmp_path, "version: 1\n---\nname: x\n"))
    assert line == 2
    assert "one YAML document" in message


def test_control_character_is_located_on_one_line(tmp_path: Path) -> None:
    file = write(tmp_path, "version: 1\nname: x\x01\n")
    line, column, message = failure(file)
    assert (line, column) == (2, 8)
    assert message == "YAML syntax error: control character U+0001 is not allowed"
