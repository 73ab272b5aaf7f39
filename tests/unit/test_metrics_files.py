"""/metrics across workers: the sum over their files survives a worker that is just starting."""

from __future__ import annotations

from pathlib import Path

import pytest

from caracal_api.metrics import MULTIPROC_DIR, HttpMetrics


def test_a_scrape_skips_the_empty_file_of_a_worker_still_starting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A starting worker creates its file before writing its header; reading it failed the scrape."""
    monkeypatch.setenv(MULTIPROC_DIR, str(tmp_path))
    (tmp_path / "counter_4242.db").touch()
    assert list(HttpMetrics().render()) == []  # nothing written yet, and no struct.error
