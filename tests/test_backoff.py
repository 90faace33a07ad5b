"""The one retry backoff and the one poll jitter: tables of inputs and the bounds they give."""

from __future__ import annotations

import pytest

from watcher.backoff import backoff, ceiling, poll_jitter, poll_jitter_max


@pytest.mark.parametrize(("base", "cap", "retries", "expected"), [
    (1.0, 30.0, 0, 1.0),        # the first retry waits up to the base
    (1.0, 30.0, 1, 2.0),        # then doubles ...
    (1.0, 30.0, 4, 16.0),
    (1.0, 30.0, 5, 30.0),       # ... up to the cap
    (30.0, 3600.0, 7, 3600.0),  # the delivery defaults reach their cap at the 8th retry
    (0.01, 0.3, 10_000, 0.3),   # a target failing for weeks: no float overflow
    (5.0, 1.0, 0, 1.0),         # a cap below the base wins
])
def test_the_ceiling_doubles_from_the_base_up_to_the_cap(
        base: float, cap: float, retries: int, expected: float) -> None:
    assert ceiling(base, cap, retries) == expected


@pytest.mark.parametrize(("base", "cap", "retries"), [(1.0, 30.0, 0), (1.0, 30.0, 3),
                                                      (30.0, 3600.0, 100), (0.001, 0.001, 2)])
def test_the_backoff_is_half_to_all_of_the_ceiling(base: float, cap: float, retries: int) -> None:
    top = ceiling(base, cap, retries)
    waits = [backoff(base, cap, retries) for _ in range(200)]
    assert all(top / 2 <= w <= top for w in waits)
    assert len(set(waits)) > 1  # jittered, so retries that failed together do not bunch up


@pytest.mark.parametrize(("interval", "expected"), [
    (1.0, 0.05),      # a test watch: a twentieth of its interval
    (60.0, 3.0),
    (100.0, 5.0),     # from here on, five seconds at most
    (3600.0, 5.0),
])
def test_poll_jitter_is_a_twentieth_of_the_interval_up_to_five_seconds(
        interval: float, expected: float) -> None:
    assert poll_jitter_max(interval) == pytest.approx(expected)
    assert all(0 <= poll_jitter(interval) <= expected for _ in range(200))
