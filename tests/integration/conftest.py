"""Fixtures the integration tests share beyond the servers of tests/conftest.py."""

from tests.integration.wire_budget import counted

__all__ = ["counted"]
