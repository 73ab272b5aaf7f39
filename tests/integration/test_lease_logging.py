"""The dispatcher's lease session: a lost connection is logged with what broke it."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from caracal.embedded import EmbeddedPostgres
from caracal_dispatcher.leases import StreamLeases


@pytest.fixture
def own_postgres(tmp_path: Path) -> Iterator[EmbeddedPostgres]:
    """A Postgres whose backend processes this test may freeze (it runs them on this machine)."""
    postgres = EmbeddedPostgres(tmp_path / "pg", durable=False)
    postgres.start()
    try:
        yield postgres
    finally:
        postgres.destroy()


async def test_lease_session_that_stops_answering_is_logged_with_its_traceback(
    own_postgres: EmbeddedPostgres, caplog: pytest.LogCaptureFixture
) -> None:
    """Its backend frozen, the liveness check times out: a warning carrying the exception, then a new one."""
    leases = StreamLeases(own_postgres.url)
    first = await leases.connection()
    assert await leases.claim(["s.frozen"]) == ["s.frozen"]
    frozen = first.get_server_pid()
    os.kill(frozen, signal.SIGSTOP)
    try:
        leases.checked_at = 0.0  # due for its liveness check now
        with caplog.at_level(logging.WARNING, logger="caracal.dispatcher.leases"):
            second = await leases.connection()
        assert second is not first and leases.held == set()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(frozen, signal.SIGCONT)
        await leases.close()
    [lost] = [r for r in caplog.records if "lease connection lost" in r.getMessage()]
    assert lost.exc_info is not None and isinstance(lost.exc_info[1], TimeoutError), lost.exc_info
