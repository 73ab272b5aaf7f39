"""The soak's figures from inside the API: its access lines, by kind, within the measured span."""

from __future__ import annotations

import json
from pathlib import Path

from bench.soak import server_side_figures


def _line(time: str, message: str, logger: str = "caracal.api.access") -> str:
    return json.dumps({"time": time, "level": "info", "logger": logger, "message": message}) + "\n"


def test_access_lines_are_counted_by_kind_within_the_span_only(tmp_path: Path) -> None:
    log = tmp_path / "api0.log"
    t = "2026-12-02T10:00:{:02d}.000Z"
    lines = [_line(t.format(1), f"GET /v1/zones/{{zone_id}} 200 {ms} ms") for ms in range(1, 101)]
    lines += [
        _line(t.format(2), "GET /v1/zones 200 7.5 ms"),
        _line(t.format(2), "POST /v1/zones 201 12.0 ms"),
        _line(t.format(2), "GET /ready 200 0.3 ms"),  # not a kind of the mix
        _line(t.format(2), "api: listening on 0.0.0.0:1 with 1 worker(s)", logger="caracal.api"),
        _line(t.format(30), "PATCH /v1/zones/{zone_id} 200 99.0 ms"),  # after the span
        _line("2026-12-02T09:59:00.000Z", "DELETE /v1/zones/{zone_id} 204 50.0 ms"),  # before it
    ]
    log.write_text("".join(lines))
    start = 1_796_205_600.0  # 2026-12-02T10:00:00Z
    figures = server_side_figures([log], (start, start + 10))
    assert figures == {"get": (100, 51.0, 100.0), "list": (1, 7.5, 7.5), "post": (1, 12.0, 12.0)}
