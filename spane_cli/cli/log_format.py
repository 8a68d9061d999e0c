"""How `spane worker` writes its log: text for people, or one JSON object a line for log
shippers (`--log-format json`)."""

from __future__ import annotations

import json
import logging
from enum import StrEnum

from spane_cli.timeutil import iso

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class LogFormat(StrEnum):
    TEXT = "text"
    JSON = "json"


class JsonLogFormatter(logging.Formatter):
    """`{"time", "level", "logger", "message", "pid"}`, plus `error` with the traceback of
    a logged exception: each record one line, whatever its message holds."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": iso(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)
