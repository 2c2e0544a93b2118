"""Logging: one JSON object per line (or plain text), every line of a request with its id.

``server.log_format: auto`` (the default) writes plain text when stderr is a terminal, for a person
running ``embed-gateway serve`` by hand, and JSON everywhere else (a container, systemd, a pipe).

Why JSON by default: log shippers (Loki, Elasticsearch, CloudWatch) index fields, and a request
id field lets an operator pull every line one request caused — the access line, a fallback
warning, an engine error. Request texts never appear unless ``server.log_request_texts`` is on
(they are users' memories): the service puts them on the request context only then.

Configured once by the CLI (:func:`configure_logging`); uvicorn's own loggers are not configured
by uvicorn (``log_config=None``) and propagate here, so its lines are JSON too.

At ``info`` every request writes its access line, so a line must be cheap: neither format prints
where a call came from, its thread or its process, so the records do not collect them (the
switches of the logging HOWTO's "Optimization" section; ``findCaller`` alone walks the stack per
line), and the JSON timestamp's seconds are formatted once per second.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any, TextIO

import orjson

from gateway.config import ServerSettings
from gateway.obs.context import request_id

__all__ = ["JsonFormatter", "TextFormatter", "configure_logging", "log_format"]


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields = getattr(record, "fields", None)
    return fields if isinstance(fields, dict) else {}


def _request_id(record: logging.LogRecord) -> str:
    return str(getattr(record, "request_id", "") or request_id())


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "message", "request_id"?, ...fields, "exc"?}`` on one line."""

    def __init__(self) -> None:
        super().__init__()
        self._second = -1
        self._second_text = ""

    def _ts(self, record: logging.LogRecord) -> str:
        second = int(record.created)
        if second != self._second:
            self._second, self._second_text = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._second_text}.{int(record.msecs):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": self._ts(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = _request_id(record)
        if rid:
            out["request_id"] = rid
        out.update(_fields(record))
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


class TextFormatter(logging.Formatter):
    """``time LEVEL logger [request id]: message key=value ...`` for people reading a terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s%(rid)s: %(message)s%(kv)s")

    def format(self, record: logging.LogRecord) -> str:
        rid = _request_id(record)
        record.rid = f" [{rid}]" if rid else ""
        kv = _fields(record)
        record.kv = "".join(f" {k}={v}" for k, v in kv.items())
        return super().format(record)


def log_format(server: ServerSettings, stream: TextIO) -> str:
    """``json`` or ``text``: as configured, or for ``auto`` text on a terminal and JSON elsewhere."""
    if server.log_format != "auto":
        return server.log_format
    try:
        return "text" if stream.isatty() else "json"
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return "json"


def configure_logging(server: ServerSettings) -> None:
    """The root logger: one handler on stderr, the configured level and format."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format(server, sys.stderr) == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(server.log_level.upper())
    # what neither formatter prints, no record collects (see the module docstring)
    logging._srcfile = None  # type: ignore[attr-defined]  # the HOWTO's documented switch for findCaller
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
