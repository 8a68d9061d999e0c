"""docs/api.md against docs/openapi.json, without a server: every route of the document has a
curl example, every curl example names a route, parameters and a body the document has, and
every JSON answer shown after an example matches that route's schemas.

The page is parsed, not grepped: fenced blocks, shell words (shlex), curl's options, URLs
(urllib). A path template's `{name}` matches a concrete segment that its parameter's schema
accepts, literal segments win over placeholders (`/dead-letters/purge` is not a letter id).
"""

from __future__ import annotations

import copy
import json
import re
import shlex
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from jsonschema import Draft202012Validator

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "api.md"
DOCUMENT = ROOT / "docs" / "openapi.json"
BASE = "http://127.0.0.1:8080"
METHODS = ("get", "post", "put", "patch", "delete", "head", "options")
# Served by the app but not operations of its own document: the document itself.
OUTSIDE_THE_DOCUMENT = {("GET", "/openapi.json")}

FENCE = re.compile(r"^```([\w-]*)\n(.*?)^```[ \t]*$", re.M | re.S)
HEADING = re.compile(r"^#{1,6} ", re.M)
OPERATORS = {"|", "||", "&&", ";", "&", "(", ")"}
# curl's options the page may use: those without a value, and those with one.
FLAGS = {
    "-s": "--silent",
    "-S": "--show-error",
    "-i": "--include",
    "-N": "--no-buffer",
    "-f": "--fail",
    "-v": "--verbose",
    "-L": "--location",
    "-G": "--get",
}
VALUED = {
    "-X": "--request",
    "-H": "--header",
    "-d": "--data",
    "-o": "--output",
    "-w": "--write-out",
    "--data-binary": "--data-binary",
    "--data-raw": "--data-raw",
    "--json": "--json",
}
DATA = {"--data", "--data-binary", "--data-raw", "--json"}


@dataclass
class Curl:
    line: int
    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)  # lower-cased names
    data: str | None = None

    @property
    def where(self) -> str:
        return f"docs/api.md:{self.line}: curl -X {self.method} {self.url}"


@dataclass(frozen=True)
class Route:
    method: str
    template: str
    operation: dict[str, Any]

    def parameters(self, where: str) -> dict[str, dict[str, Any]]:
        return {
            p["name"].lower() if where == "header" else p["name"]: p
            for p in self.operation.get("parameters", ())
            if p["in"] == where
        }


# Parsing the page --------------------------------------------------------------------------


def fenced_blocks(text: str) -> list[tuple[int, str, str]]:
    """(line of the first line inside, language, text) of each fenced block."""
    return [
        (text.count("\n", 0, match.start(2)) + 1, match[1], match[2])
        for match in FENCE.finditer(text)
    ]


def shell_commands(block: str, first_line: int) -> list[tuple[int, list[str]]]:
    """The simple commands of a shell block as words, with the line each starts on. A line
    ending in `\\` or `|` goes on on the next one."""
    commands: list[tuple[int, list[str]]] = []
    pending, start = "", first_line
    for number, line in enumerate(block.splitlines(), first_line):
        if not pending:
            start = number
        stripped = line.rstrip()
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        if stripped.endswith("|"):
            pending += stripped + " "
            continue
        pending += stripped
        lexer = shlex.shlex(pending, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        lexer.commenters = "#"
        words: list[str] = []
        for word in lexer:
            if word in OPERATORS:
                if words:
                    commands.append((start, words))
                words = []
            else:
                words.append(word)
        if words:
            commands.append((start, words))
        pending = ""
    assert not pending, f"docs/api.md:{start}: a command continues past its block"
    return commands


def parse_curl(words: list[str], line: int) -> Curl:
    assert words[0] == "curl"
    options: list[tuple[str, str | None]] = []
    urls: list[str] = []
    rest = iter(words[1:])
    for word in rest:
        if word.startswith("--"):
            name = word
        elif word.startswith("-") and len(word) > 2 and all(f"-{c}" in FLAGS for c in word[1:]):
            options.extend((FLAGS[f"-{c}"], None) for c in word[1:])
            continue
        elif word.startswith("-"):
            name = FLAGS.get(word) or VALUED.get(word) or word
        else:
            urls.append(word)
            continue
        if name in VALUED.values():
            value = next(rest, None)
            assert value is not None, f"docs/api.md:{line}: {word} without its value"
            options.append((name, value))
        elif name in FLAGS.values():
            options.append((name, None))
        else:
            raise AssertionError(
                f"docs/api.md:{line}: curl option {word} is not one the test knows"
            )
    assert len(urls) == 1, f"docs/api.md:{line}: curl needs one URL, not {urls}"
    curl = Curl(line=line, method="", url=urls[0])
    explicit = None
    for name, value in options:
        if name == "--header":
            assert value is not None and ":" in value, f"docs/api.md:{line}: header {value!r}"
            key, _, given = value.partition(":")
            curl.headers[key.strip().lower()] = given.strip()
        elif name == "--request":
            explicit = value
        elif name in DATA:
            curl.data = value
            if name == "--json":
                curl.headers.setdefault("content-type", "application/json")
                curl.headers.setdefault("accept", "application/json")
    if explicit:
        curl.method = explicit.upper()
    elif ("--get", None) in options:
        curl.method = "GET"
    else:
        curl.method = "POST" if curl.data is not None else "GET"
    return curl


@dataclass
class Example:
    curl: Curl | None  # the last curl above it under the same heading
    line: int
    answer: Any


def read_page(text: str) -> tuple[list[Curl], list[Example]]:
    """Every curl of every fenced block, and every ```json block with the curl it answers."""
    curls: list[Curl] = []
    examples: list[Example] = []
    headings = [text.count("\n", 0, m.start()) + 1 for m in HEADING.finditer(text)]
    last: Curl | None = None
    for line, language, block in fenced_blocks(text):
        if last is not None and any(last.line < h < line for h in headings):
            last = None
        if language == "json":
            try:
                answer = json.loads(block)
            except ValueError as exc:
                raise AssertionError(f"docs/api.md:{line}: not JSON: {exc}") from None
            examples.append(Example(curl=last, line=line, answer=answer))
            continue
        for start, words in shell_commands(block, line) if "curl" in block else ():
            if words and words[0] == "curl":
                last = parse_curl(words, start)
                curls.append(last)
    return curls, examples


# The OpenAPI document ----------------------------------------------------------------------


@cache
def document() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DOCUMENT.read_text(encoding="utf-8"))
    return loaded


@cache
def strict_document() -> dict[str, Any]:
    """The document with every object schema closed: an answer on the page may not have a
    field its model does not."""
    closed = copy.deepcopy(document())

    def close(node: Any) -> None:
        if isinstance(node, dict):
            if "properties" in node and "additionalProperties" not in node:
                node["additionalProperties"] = False
            for value in node.values():
                close(value)
        elif isinstance(node, list):
            for value in node:
                close(value)

    close(closed["components"])
    close(closed["paths"])
    return closed


def routes() -> list[Route]:
    return [
        Route(method.upper(), template, operation)
        for template, operations in document()["paths"].items()
        for method, operation in operations.items()
        if method in METHODS
    ]


def schema_errors(schema: dict[str, Any], value: Any) -> list[str]:
    root = {**schema, "components": strict_document()["components"]}
    validator = Draft202012Validator(root)
    return [
        f"{'/'.join(str(p) for p in error.absolute_path) or '(top)'}: {error.message}"
        for error in validator.iter_errors(value)
    ]


def typed(schema: dict[str, Any], text: str) -> Any:
    """A parameter's text as its schema's type wants it (a query string has only text)."""
    kinds = {schema.get("type")} | {s.get("type") for s in schema.get("anyOf", ())}
    if "integer" in kinds and re.fullmatch(r"-?[0-9]+", text):
        return int(text)
    if "boolean" in kinds and text in ("true", "false"):
        return text == "true"
    return text


def match_path(path: str, method: str) -> tuple[Route | None, set[str]]:
    """The route of this concrete path and method, and the methods the path has at all. Of
    the templates that match, the one with the most literal segments wins."""
    segments = path.strip("/").split("/")
    found: list[tuple[int, Route]] = []
    methods: set[str] = set()
    for route in routes():
        parts = route.template.strip("/").split("/")
        if len(parts) != len(segments):
            continue
        literal = 0
        for part, segment in zip(parts, segments, strict=True):
            placeholder = re.fullmatch(r"\{(\w+)\}", part)
            if placeholder is None:
                if part != segment:
                    break
                literal += 1
                continue
            parameter = route.parameters("path").get(placeholder[1])
            if parameter is None or schema_errors(
                parameter["schema"], typed(parameter["schema"], segment)
            ):
                break
        else:
            found.append((literal, route))
    if not found:
        return None, methods
    best = max(literal for literal, _ in found)
    for literal, route in found:
        if literal == best:
            methods.add(route.method)
    chosen = [r for literal, r in found if literal == best and r.method == method]
    return (chosen[0] if chosen else None), methods


def route_of(curl: Curl) -> Route | None:
    """The route a curl example calls; AssertionError naming what the document lacks."""
    assert curl.url.startswith(BASE + "/"), f"{curl.where}: examples use {BASE}"
    path = urlsplit(curl.url).path
    if (curl.method, path) in OUTSIDE_THE_DOCUMENT:
        return None
    route, methods = match_path(path, curl.method)
    assert methods, f"{curl.where}: the document has no path {path}"
    assert route is not None, f"{curl.where}: {path} has {sorted(methods)}, not {curl.method}"
    return route


def problems_of(curl: Curl) -> list[str]:
    """What a curl example gets wrong against the document (its route must exist)."""
    route = route_of(curl)
    if route is None:
        return []
    wrong: list[str] = []
    query = route.parameters("query")
    for name, value in parse_qsl(urlsplit(curl.url).query, keep_blank_values=True):
        if name not in query:
            wrong.append(f"no query parameter {name!r} (it has {sorted(query)})")
            continue
        schema = query[name]["schema"]
        wrong += [f"?{name}={value}: {e}" for e in schema_errors(schema, typed(schema, value))]
    for name, parameter in route.parameters("header").items():
        value = curl.headers.get(name)
        if value is not None and "$" not in value:
            wrong += [f"{name}: {e}" for e in schema_errors(parameter["schema"], value)]
    secured = bool(route.operation.get("security"))
    authorization = curl.headers.get("authorization")
    if secured and authorization != "Bearer $TOKEN":
        wrong.append("needs -H 'Authorization: Bearer $TOKEN'")
    if not secured and authorization is not None:
        wrong.append("sends a token to a route that takes none")
    body = route.operation.get("requestBody")
    literal = curl.data is not None and not curl.data.startswith(("$", "@"))
    if body is not None and curl.data is not None:
        if curl.headers.get("content-type") != "application/json":
            wrong.append("a JSON body needs -H 'Content-Type: application/json'")
        if literal:
            assert curl.data is not None
            try:
                given = json.loads(curl.data)
            except ValueError as exc:
                wrong.append(f"the body is not JSON: {exc}")
            else:
                schema = body["content"]["application/json"]["schema"]
                wrong += [f"body {e}" for e in schema_errors(schema, given)]
    elif body is None and literal:
        wrong.append("sends a body to a route that takes none")
    if body is not None and body.get("required") and curl.data is None:
        wrong.append("the route needs a body")
    return [f"{curl.where}: {w}" for w in wrong]


def answer_problems(example: Example) -> list[str]:
    """What a JSON answer on the page gets wrong against the schemas of its route."""
    where = f"docs/api.md:{example.line}"
    answer = example.answer
    route = route_of(example.curl) if example.curl else None
    is_problem = isinstance(answer, dict) and str(answer.get("type", "")).startswith(
        "urn:spane:problem:"
    )
    if is_problem:
        wrong = schema_errors({"$ref": "#/components/schemas/Problem"}, answer)
        if route is not None and str(answer.get("status")) not in route.operation["responses"]:
            wrong.append(f"{route.method} {route.template} has no {answer.get('status')} answer")
        return [f"{where}: {w}" for w in wrong]
    if route is None:
        return [f"{where}: a JSON answer with no curl example of a route above it"]
    schemas = [
        response["content"]["application/json"]["schema"]
        for status, response in route.operation["responses"].items()
        if status.startswith("2") and "application/json" in response.get("content", {})
    ]
    assert schemas, f"{where}: {route.method} {route.template} answers no JSON"
    attempts = [schema_errors(schema, answer) for schema in schemas]
    if any(not errors for errors in attempts):
        return []
    return [f"{where}: {route.method} {route.template}: {e}" for e in attempts[0]]


@cache
def page() -> tuple[list[Curl], list[Example]]:
    return read_page(PAGE.read_text(encoding="utf-8"))


# The tests ---------------------------------------------------------------------------------


def uncovered(curls: list[Curl]) -> list[tuple[str, str]]:
    """(method, template) of each route of the document that no curl example calls."""
    covered = {(r.method, r.template) for r in map(route_of, curls) if r is not None}
    return sorted({(r.method, r.template) for r in routes()} - covered)


def test_every_route_of_the_document_has_a_curl_example() -> None:
    curls, _ = page()
    missing = uncovered(curls)
    assert not missing, "docs/api.md has no curl example of " + ", ".join(
        f"{method} {template}" for method, template in missing
    )


def test_every_curl_example_names_a_route_the_document_has() -> None:
    curls, _ = page()
    assert len(curls) >= len(routes())
    wrong = [problem for curl in curls for problem in problems_of(curl)]
    assert not wrong, "\n".join(wrong)


def test_every_json_answer_matches_the_schemas_of_its_route() -> None:
    _, examples = page()
    assert len(examples) >= len(routes()) - 3  # the streams answer SSE or NDJSON
    wrong = [problem for example in examples for problem in answer_problems(example)]
    assert not wrong, "\n".join(wrong)


# The checks themselves, on made-up pages: they fail when they should.

GOOD = """\
## A
```sh
curl -s -H "Authorization: Bearer $TOKEN" \\
     'http://127.0.0.1:8080/v1/executions?status=failed&limit=2'
```
"""


def test_a_page_without_an_example_of_a_route_is_found_out() -> None:
    curls, _ = read_page(GOOD)
    assert [problem for curl in curls for problem in problems_of(curl)] == []
    missing = uncovered(curls)
    assert ("GET", "/v1/executions") not in missing
    assert ("POST", "/v1/executions") in missing
    assert len(missing) == len(routes()) - 1


@pytest.mark.parametrize(
    ("example", "complaint"),
    [
        ("curl -s -H 'Authorization: Bearer $TOKEN' http://127.0.0.1:8080/v1/nothing", "no path"),
        (
            "curl -s -X PUT -H 'Authorization: Bearer $TOKEN' http://127.0.0.1:8080/v1/executions",
            "not PUT",
        ),
        (
            "curl -s -X DELETE -H 'Authorization: Bearer $TOKEN' "
            "http://127.0.0.1:8080/v1/dead-letters/purge",
            "not DELETE",
        ),
        ("curl -s http://127.0.0.1:8080/v1/executions?sort=asc", "no query parameter 'sort'"),
        ("curl -s http://127.0.0.1:8080/v1/executions?limit=0", "?limit=0"),
        ("curl -s http://127.0.0.1:8080/v1/streams", "Authorization"),
        (
            "curl -s -H 'Authorization: Bearer $TOKEN' -H 'Content-Type: application/json' "
            "-d '{\"ids\": []}' http://127.0.0.1:8080/v1/dead-letters/purge",
            "body",
        ),
        (
            "curl -s -H 'Authorization: Bearer $TOKEN' -d '{\"all\": true}' "
            "http://127.0.0.1:8080/v1/dead-letters/purge",
            "Content-Type",
        ),
        ("curl -s http://localhost/healthz", "examples use"),
        ("curl -k http://127.0.0.1:8080/healthz", "not one the test knows"),
    ],
)
def test_a_wrong_example_is_found_out(example: str, complaint: str) -> None:
    try:
        curls, _ = read_page(f"```sh\n{example}\n```\n")
        wrong = [problem for curl in curls for problem in problems_of(curl)]
    except AssertionError as exc:
        wrong = [str(exc)]
    assert any(complaint in problem for problem in wrong), wrong


def test_a_wrong_answer_is_found_out() -> None:
    text = GOOD + '```json\n{"items": [{"id": "x"}], "next_cursor": null, "total": 1}\n```\n'
    _, (example,) = read_page(text)
    wrong = "\n".join(answer_problems(example))
    assert "'workflow' is a required property" in wrong
    assert "'total' was unexpected" in wrong
    stray = read_page('## B\n```json\n{"status": "ok"}\n```\n')[1][0]
    assert "no curl example" in answer_problems(stray)[0]
