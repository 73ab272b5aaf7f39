"""What the end-to-end tests share: the services a test started, stopped whatever happens."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support import Service


@pytest.fixture
def started() -> Iterator[list[Service]]:
    """Services a test started; stopped (SIGTERM) at the end whatever happens."""
    services: list[Service] = []
    yield services
    for service in services:
        service.stop()
