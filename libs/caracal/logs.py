"""JSON log lines, one per event, and who and what they are about.

The API binds the request id, zone id and actor id in context variables per request, so a line
logged deep in a domain function still names them; each request runs in its own task, so values never
cross requests. The formatter writes a fixed set of fields: a record's `extra` attributes are never
copied into the line, so nothing passed that way can leak a secret.
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextvars import ContextVar, Token
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import TextIO, cast

import msgspec
from opentelemetry import trace

from caracal.ids import is_valid_param

REQUEST_ID: ContextVar[str | None] = ContextVar("caracal_request_id", default=None)
ZONE_ID: ContextVar[str | None] = ContextVar("caracal_zone_id", default=None)
ACTOR_ID: ContextVar[str | None] = ContextVar("caracal_actor_id", default=None)
ZONES_PREFIX = "/v1/zones/"


def zone_in_path(path: str) -> str | None:
    """The `<z>` of `/v1/zones/<z>/...`; a malformed segment is not logged as a zone."""
    if not path.startswith(ZONES_PREFIX):
        return None
    segment = path[len(ZONES_PREFIX) :].partition("/")[0]
    return segment if segment and is_valid_param(segment) else None


@dataclass(frozen=True, slots=True)
class Bound:
    """What `bind_request` set, so the request's end puts the previous values back."""

    request: Token[str | None]
    zone: Token[str | None]
    actor: Token[str | None]


def bind_request(request_id: str, path: str) -> Bound:
    return Bound(REQUEST_ID.set(request_id), ZONE_ID.set(zone_in_path(path)), ACTOR_ID.set(None))


def unbind(bound: Bound) -> None:
    ACTOR_ID.reset(bound.actor)
    ZONE_ID.reset(bound.zone)
    REQUEST_ID.reset(bound.request)


def bind_actor(actor_id: str) -> None:
    """Set by authentication once the caller is known (an admin token's id, never the token)."""
    ACTOR_ID.set(actor_id)


def current() -> dict[str, str]:
    """The bound fields that have a value, under their log field names."""
    fields = {"request_id": REQUEST_ID.get(), "zone_id": ZONE_ID.get(), "actor_id": ACTOR_ID.get()}
    return {name: value for name, value in fields.items() if value is not None}


def trace_id() -> str | None:
    """The current span's trace, when there is a span (tracing on): a request's joins its caller's."""
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None


def _utc_ms(created: float) -> str:
    """`2026-06-03T10:12:13.456Z`, the wire's timestamp shape (milliseconds truncated, as isoformat)."""
    whole = int(created)
    micro = round((created - whole) * 1_000_000)  # as datetime rounds a timestamp, then truncate
    if micro == 1_000_000:
        whole, micro = whole + 1, 0
    return f"{_utc_second(whole)}.{micro // 1000:03d}Z"


@lru_cache(maxsize=8)
def _utc_second(whole: int) -> str:
    """The line's second, formatted once per second rather than per line (measured: 0.7 % of a GET)."""
    return datetime.fromtimestamp(whole, UTC).strftime("%Y-%m-%dT%H:%M:%S")


class JsonFormatter(logging.Formatter):
    """time, level, process, logger, message, the bound ids, trace_id, and exception text."""

    def __init__(self, process: str) -> None:
        super().__init__()
        self.process = process

    def format(self, record: logging.LogRecord) -> str:
        line = self.fields(record.created, record.levelname.lower(), record.name, record.getMessage())
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return msgspec.json.encode(line).decode()

    def fields(self, created: float, level: str, logger: str, message: str) -> dict[str, str]:
        line = {
            "time": _utc_ms(created),
            "level": level,
            "process": self.process,
            "logger": logger,
            "message": message,
            **current(),
        }
        if (found := trace_id()) is not None:
            line["trace_id"] = found
        return line

    def line(self, created: float, level: str, logger: str, message: str) -> str:
        return msgspec.json.encode(self.fields(created, level, logger, message)).decode()


class LineHandler(logging.StreamHandler[TextIO]):
    """Lines logged on an event loop's thread are written together when the loop's current step ends
    (one write and flush per step, not per line: a busy API worker logs a line per request); a line
    from any other thread, or with no loop running, first writes what waits, then itself. What waits
    is also written by flush(), which logging runs at exit."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        self.waiting: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.add(self.format(record))
        except RecursionError:  # as StreamHandler.emit: never swallowed
            raise
        except Exception:
            # logging's contract: a handler never raises into the code that logs. handleError prints
            # the traceback and the record to stderr (this handler is where a log line would go, so it
            # cannot log it); tests/unit/test_logging.py checks that it does
            self.handleError(record)

    def add(self, line: str) -> None:
        """A formatted line (the caller holds the handler's lock)."""
        self.waiting.append(line + self.terminator)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._write_waiting()
            return
        if len(self.waiting) == 1:
            loop.call_soon(self.flush)

    def flush(self) -> None:
        self.acquire()
        try:
            self._write_waiting()
        finally:
            self.release()

    def _write_waiting(self) -> None:
        if self.waiting:
            text, self.waiting = "".join(self.waiting), []
            self.stream.write(text)
        if self.stream and hasattr(self.stream, "flush"):
            self.stream.flush()


class InfoLines:
    """A logger's INFO lines, written straight to the process's JSON LineHandler when that handler is
    the only one they would reach (the access line: one per request, and a LogRecord with logging's
    dispatch cost more than the line itself); through logging as usual otherwise (a test capturing
    logs, a text format, a handler or filter of its own)."""

    def __init__(self, name: str) -> None:
        self.logger = logging.getLogger(name)

    def info(self, message: str) -> None:
        handler = self._only_handler()
        if handler is None:
            self.logger.info("%s", message)
            return
        formatter = cast("JsonFormatter", handler.formatter)
        line = formatter.line(time.time(), "info", self.logger.name, message)
        handler.acquire()
        try:
            handler.add(line)
        finally:
            handler.release()

    def _only_handler(self) -> LineHandler | None:
        if self.logger.disabled or not self.logger.isEnabledFor(logging.INFO):
            return None
        handlers = logging.root.handlers
        if len(handlers) != 1 or logging.root.filters:
            return None
        handler = handlers[0]
        if not (isinstance(handler, LineHandler) and isinstance(handler.formatter, JsonFormatter)):
            return None
        if handler.level > logging.INFO or handler.filters:
            return None
        logger: logging.Logger | None = self.logger
        while logger is not None and logger is not logging.root:
            if logger.handlers or logger.filters or not logger.propagate:
                return None
            logger = logger.parent
        return handler
