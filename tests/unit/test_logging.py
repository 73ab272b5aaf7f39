"""The JSON log line: fixed fields, the bound request context, escaping, exceptions, no `extra`."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider

from caracal import logs
from caracal.telemetry import configure_logging


@pytest.fixture
def emitted() -> Iterator[io.StringIO]:
    """A logger whose lines go through the JSON formatter into a buffer."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(logs.JsonFormatter("api"))
    logger = logging.getLogger("caracal.test.logging")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield buffer
    finally:
        logger.removeHandler(handler)


def _lines(buffer: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


def test_a_line_has_time_level_process_logger_and_message_and_nothing_unbound(
    emitted: io.StringIO,
) -> None:
    logging.getLogger("caracal.test.logging").warning("zone %s is %d%% full", "z1", 90)
    [line] = _lines(emitted)
    assert set(line) == {"time", "level", "process", "logger", "message"}
    assert (line["level"], line["process"], line["logger"]) == ("warning", "api", "caracal.test.logging")
    assert line["message"] == "zone z1 is 90% full"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["time"])


def test_quotes_backslashes_and_newlines_stay_on_one_line_and_decode_back(emitted: io.StringIO) -> None:
    message = 'said "hi"\\ then\nleft\t{}'
    logging.getLogger("caracal.test.logging").info("%s", message)
    assert emitted.getvalue().count("\n") == 1
    assert _lines(emitted)[0]["message"] == message


def test_the_exception_text_is_one_field_of_the_line(emitted: io.StringIO) -> None:
    try:
        raise ValueError("boom-42")
    except ValueError:
        logging.getLogger("caracal.test.logging").exception("failed")
    [line] = _lines(emitted)
    assert line["message"] == "failed"
    assert "Traceback" in line["exception"] and "ValueError: boom-42" in line["exception"]


def test_extra_attributes_are_never_written(emitted: io.StringIO) -> None:
    """Only the fixed fields: a secret passed as `extra` does not reach the line."""
    logging.getLogger("caracal.test.logging").info("login", extra={"password": "pw-s3cret", "token": "t"})
    assert "pw-s3cret" not in emitted.getvalue()
    assert set(_lines(emitted)[0]) == {"time", "level", "process", "logger", "message"}


def test_the_bound_request_zone_and_actor_ids_are_fields_until_unbound(emitted: io.StringIO) -> None:
    logger = logging.getLogger("caracal.test.logging")
    bound = logs.bind_request("req-1", "/v1/zones/zone-7/applications")
    logs.bind_actor("token-9")
    logger.info("inside")
    logs.unbind(bound)
    logger.info("after")
    inside, after = _lines(emitted)
    assert (inside["request_id"], inside["zone_id"], inside["actor_id"]) == ("req-1", "zone-7", "token-9")
    assert not {"request_id", "zone_id", "actor_id"} & set(after)


@pytest.mark.parametrize(
    ("path", "zone"),
    [
        ("/v1/zones/z1", "z1"),
        ("/v1/zones/z1/resources/r", "z1"),
        ("/v1/zones", None),
        ("/v1/zones//x", None),
        ("/v1/zones/a%20b/x", None),
        ("/health", None),
    ],
)
def test_the_zone_id_is_the_zones_path_segment_when_it_is_well_formed(path: str, zone: str | None) -> None:
    assert logs.zone_in_path(path) == zone


def test_the_trace_id_of_the_current_span_is_a_field(emitted: io.StringIO) -> None:
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("work") as span:
        logging.getLogger("caracal.test.logging").info("traced")
    assert _lines(emitted)[0]["trace_id"] == format(span.get_span_context().trace_id, "032x")


def test_text_format_writes_a_plain_line(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        configure_logging("info", "reaper", "text")
        logging.getLogger("caracal.test.text").info("plain %s", "words")
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    assert " INFO reaper caracal.test.text: plain words" in capsys.readouterr().err


def test_the_time_is_the_records_utc_millisecond_truncated_as_isoformat() -> None:
    """The per-second cache gives what datetime would, at both ends of a second."""
    for created in (1764650000.0, 1764650000.0009, 1764650000.999, 1764650000.9999996, 1764650001.5):
        expected = datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")
        assert logs._utc_ms(created) == expected.replace("+00:00", "Z")


def _line_handler() -> tuple[logging.Logger, io.StringIO, logs.LineHandler]:
    buffer = io.StringIO()
    handler = logs.LineHandler(buffer)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("caracal.test.line_handler")
    logger.propagate = False
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    return logger, buffer, handler


async def _after_this_step() -> None:
    """Until callbacks scheduled so far (the handler's flush among them) have run."""
    loop = asyncio.get_running_loop()
    reached: asyncio.Future[None] = loop.create_future()
    loop.call_soon(reached.set_result, None)
    await reached


async def test_lines_logged_in_one_loop_step_are_written_together_when_it_ends() -> None:
    logger, buffer, handler = _line_handler()
    try:
        logger.info("first")
        logger.info("second")
        assert buffer.getvalue() == ""  # still this step
        await _after_this_step()
        assert buffer.getvalue() == "first\nsecond\n"
    finally:
        logger.removeHandler(handler)


async def test_a_line_from_another_thread_writes_the_waiting_lines_first_in_order() -> None:
    logger, buffer, handler = _line_handler()
    try:
        logger.info("on the loop")
        await asyncio.to_thread(logger.info, "from a thread")
        assert buffer.getvalue() == "on the loop\nfrom a thread\n"
    finally:
        logger.removeHandler(handler)


def test_without_a_loop_a_line_is_written_at_once_and_flush_writes_what_waits() -> None:
    logger, buffer, handler = _line_handler()
    try:
        logger.info("no loop")
        assert buffer.getvalue() == "no loop\n"
        handler.waiting.append("left behind\n")
        logging.shutdown([lambda: handler])  # what the interpreter runs at exit
        assert buffer.getvalue() == "no loop\nleft behind\n"
    finally:
        logger.removeHandler(handler)


def test_a_line_that_cannot_be_formatted_reports_its_traceback_and_the_next_line_is_written(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A handler never raises into the code that logs; the failure goes to stderr, traceback and all."""
    buffer = io.StringIO()
    handler = logs.LineHandler(buffer)
    handler.setFormatter(logging.Formatter("%(message)s"))

    def record(msg: str, *args: object) -> logging.LogRecord:
        return logging.LogRecord("caracal.test.unformattable", logging.INFO, __file__, 1, msg, args, None)

    handler.handle(record("%d requests", "many"))  # the message's own arguments do not fit it
    handler.handle(record("next"))
    assert buffer.getvalue() == "next\n"
    reported = capsys.readouterr().err
    assert "--- Logging error ---" in reported and "Traceback (most recent call last)" in reported
    assert "TypeError: %d format: a real number is required, not str" in reported


@pytest.fixture
def json_root() -> Iterator[tuple[io.StringIO, logs.LineHandler]]:
    """The root logger as `configure_logging` leaves it (one JSON LineHandler), into a buffer."""
    saved, level = logging.root.handlers[:], logging.root.level
    buffer = io.StringIO()
    handler = logs.LineHandler(buffer)
    handler.setFormatter(logs.JsonFormatter("api"))
    logging.root.handlers[:] = [handler]
    logging.root.setLevel(logging.INFO)
    try:
        yield buffer, handler
    finally:
        logging.root.handlers[:] = saved
        logging.root.setLevel(level)


def _no_records(*_: object, **__: object) -> logging.LogRecord:
    raise AssertionError("a LogRecord was made")


def test_an_info_line_skips_logging_when_the_json_handler_is_all_it_reaches(
    json_root: tuple[io.StringIO, logs.LineHandler], monkeypatch: pytest.MonkeyPatch
) -> None:
    buffer, handler = json_root
    logging.root.handlers[:] = [handler]  # pytest adds its capture handlers for the test's call
    lines = logs.InfoLines("caracal.test.info_lines")
    monkeypatch.setattr(lines.logger, "makeRecord", _no_records)
    bound = logs.bind_request("req-9", "/v1/zones/zone_abc/applications")
    try:
        lines.info("GET /v1/zones/{zone_id} 200 1.0 ms")
    finally:
        logs.unbind(bound)
    handler.flush()
    [line] = _lines(buffer)
    assert line == {
        "time": line["time"],
        "level": "info",
        "process": "api",
        "logger": "caracal.test.info_lines",
        "message": "GET /v1/zones/{zone_id} 200 1.0 ms",
        "request_id": "req-9",
        "zone_id": "zone_abc",
    }


def test_an_info_line_goes_through_logging_when_another_handler_or_a_filter_listens(
    json_root: tuple[io.StringIO, logs.LineHandler],
) -> None:
    buffer, handler = json_root
    logging.root.handlers[:] = [handler]
    lines = logs.InfoLines("caracal.test.info_lines")
    seen: list[str] = []
    lines.logger.addFilter(lambda record: seen.append(record.getMessage()) or True)
    try:
        lines.info("filtered")
    finally:
        lines.logger.filters.clear()
    handler.flush()
    assert seen == ["filtered"]
    assert [line["message"] for line in _lines(buffer)] == ["filtered"]
    lines.logger.setLevel(logging.WARNING)
    try:
        lines.info("below the level")
    finally:
        lines.logger.setLevel(logging.NOTSET)
    handler.flush()
    assert len(_lines(buffer)) == 1
