"""One trace across real processes: the API's server and SQL spans, the dispatcher's publish span
(linked to the request) and the stream entry's `traceparent`, exported over OTLP/HTTP to a receiver
kept in the test; the reaper's job spans arrive the same way."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from redis.asyncio import Redis

from caracal.events import CHANGES, verify
from tests.conftest import recreate_database
from tests.e2e.otlp_receiver import ReceivedSpan, Receiver, otlp_receiver
from tests.e2e.test_processes import _entry_for, call
from tests.support import HMAC_KEY_HEX, Servers, Service, eventually, service_env, start_service, wait_ready

pytestmark = pytest.mark.e2e


def _server_span(receiver: Receiver) -> ReceivedSpan | None:
    return next(
        (
            span
            for span in receiver.received()
            if span.kind == Span.SPAN_KIND_SERVER and span.name == "POST /v1/zones"
        ),
        None,
    )


def _in_trace(receiver: Receiver, trace_id: str, service: str) -> list[ReceivedSpan]:
    return [s for s in receiver.received() if s.trace_id == trace_id and s.service == service]


def _publishes_linking(receiver: Receiver, trace_id: str) -> list[ReceivedSpan]:
    return [
        span
        for span in receiver.received()
        if span.service == "caracal-dispatcher" and any(link[0] == trace_id for link in span.links)
    ]


async def _post_zone(api: Service, redis_url: str) -> dict[str, str]:
    """POST /v1/zones through the real API; the entry the dispatcher published for it."""
    redis = Redis.from_url(redis_url, decode_responses=True)
    try:
        last = await redis.xrevrange(CHANGES, count=1)
        status, zone = await asyncio.to_thread(call, api, "POST", "/v1/zones", {"name": "Traced"})
        assert status == 201
        cursor = last[0][0] if last else "0-0"
        return await _entry_for(redis, cursor, zone["id"], deadline=time.monotonic() + 10)
    finally:
        await redis.aclose()


async def test_a_request_traces_from_the_api_process_through_the_dispatcher_to_the_stream_entry(
    servers: Servers, logdir: Path, started: list[Service]
) -> None:
    with otlp_receiver() as receiver:
        env = service_env(
            await recreate_database(servers, "e2e_trace"),
            servers.redis_url,
            OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
            OTEL_BSP_SCHEDULE_DELAY="100",  # ms: spans arrive within moments, not the default 5 s
        )
        api = start_service("api", env, logdir)
        started.extend([api, start_service("dispatcher", env, logdir), start_service("reaper", env, logdir)])
        await asyncio.to_thread(wait_ready, api)
        entry = await _post_zone(api, servers.redis_url)
        await eventually(lambda: _server_span(receiver) is not None, "the API's server span", within=15)
        server = _server_span(receiver)
        assert server is not None
        trace_id = server.trace_id
        await eventually(lambda: bool(_publishes_linking(receiver, trace_id)), "the publish span")
        await eventually(
            lambda: any(s.name.startswith("reaper ") for s in receiver.received()),
            "a reaper job span",
            within=15,
        )
        for service in started:  # while the receiver answers: their exporters flush at exit
            service.stop()
    api_spans = _in_trace(receiver, trace_id, "caracal-api")
    sql = [s for s in api_spans if s.kind == Span.SPAN_KIND_CLIENT and "db.statement" in s.attributes]
    assert sql, f"no SQL client span in the request's trace: {[s.name for s in api_spans]}"
    assert all(s.parent_span_id for s in sql)  # children within the request, not roots of their own
    publish = _publishes_linking(receiver, trace_id)
    assert {s.name for s in publish} >= {f"publish {CHANGES}"}
    assert all(s.kind == Span.SPAN_KIND_PRODUCER for s in publish)
    linked = {link[1] for span in publish for link in span.links if link[0] == trace_id}
    assert linked <= {s.span_id for s in api_spans}, "the link names a span the API sent"
    # the stream entry carries the request's trace context, under the entry's signature
    assert entry["traceparent"].split("-")[1] == trace_id
    assert entry["traceparent"].split("-")[2] in linked
    assert verify(bytes.fromhex(HMAC_KEY_HEX), CHANGES, entry)
    reaper = [s for s in receiver.received() if s.name.startswith("reaper ")]
    assert {s.service for s in reaper} == {"caracal-reaper"}
