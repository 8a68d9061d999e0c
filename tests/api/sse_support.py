"""Reading Server-Sent Events the way a browser's EventSource does, for the stream tests."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass
class Message:
    event: str
    data: str
    id: str | None

    def json(self) -> Any:
        return json.loads(self.data)


def messages(response: httpx.Response) -> Iterator[Message]:
    """The messages of an open `text/event-stream` response, comments (pings) left out."""
    event, data, last_id = "message", [], None
    for line in response.iter_lines():
        if not line:
            if data:
                yield Message(event, "\n".join(data), last_id)
            event, data, last_id = "message", [], None
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "data":
            data.append(value)
        elif name == "event":
            event = value
        elif name == "id":
            last_id = value
