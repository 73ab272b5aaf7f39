"""Retry backoff of the outbox dispatcher: 2^attempts seconds, capped at 60 s, jittered down by up to 30 %."""

import pytest

from caracal_dispatcher.dispatcher import retry_delay

DRAWS = 400


@pytest.mark.parametrize("attempts", [0, 1, 2, 3, 4, 5, 6, 7, 10, 16, 17, 100, 10_000])
def test_delay_stays_within_the_jitter_band_of_the_capped_exponential(attempts: int) -> None:
    """Every draw lies in [0.7 * min(60, 2^a), min(60, 2^a)]."""
    ceiling = min(60.0, 2.0 ** min(attempts, 64))
    for _ in range(DRAWS):
        delay = retry_delay(attempts)
        assert 0.7 * ceiling <= delay <= ceiling, (attempts, delay)


def test_delay_never_exceeds_sixty_seconds() -> None:
    """However many attempts failed, the next one is at most 60 s away."""
    assert max(retry_delay(a) for a in range(200) for _ in range(20)) <= 60.0


def test_delay_grows_exponentially_until_the_cap() -> None:
    """Each attempt's band starts above the previous attempt's ceiling until 2^a passes 60 s."""
    for attempts in range(1, 5):
        lowest_next = min(retry_delay(attempts + 1) for _ in range(DRAWS))
        assert lowest_next > 2.0**attempts, attempts


@pytest.mark.parametrize("attempts", [1, 3, 8])
def test_delay_is_jittered(attempts: int) -> None:
    """Many draws are not all equal and spread over a good part of the band."""
    draws = [retry_delay(attempts) for _ in range(DRAWS)]
    ceiling = min(60.0, 2.0**attempts)
    assert len(set(draws)) > DRAWS // 2
    assert max(draws) - min(draws) > 0.2 * ceiling
