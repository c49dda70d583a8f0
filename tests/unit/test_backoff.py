"""The AMI reconnect schedule, as a table: times in, delays out (worst-case jitter)."""

from __future__ import annotations

import pytest

from crmcomms.ami.backoff import HEALTHY_AFTER, RECENT_WINDOW, ReconnectBackoff

WORST = 1.0  # the jitter source's largest value: every delay at its ceiling


def schedule(backoff: ReconnectBackoff, start: float, until: float) -> list[float]:
    """Attempt times from ``start`` while the PBX stays unreachable until ``until``."""
    now, attempts = start, []
    while now < until:
        now += backoff.next_delay(now)
        attempts.append(now)
    return attempts


def test_first_retries_are_fast_and_capped_at_one_second_after_a_blink() -> None:
    backoff = ReconnectBackoff(30.0, lambda: WORST, now=0.0)
    backoff.link_up(0.0)
    assert backoff.link_down(3600.0)
    delays = [backoff.next_delay(3600.0 + t) for t in range(6)]
    assert delays == [0.25, 0.5, 1.0, 1.0, 1.0, 1.0]


@pytest.mark.parametrize("outage", [0.3, 1.0, 5.0, 17.0, 59.0])
def test_pbx_back_within_the_window_is_retried_within_a_second(outage: float) -> None:
    backoff = ReconnectBackoff(30.0, lambda: WORST, now=0.0)
    backoff.link_up(0.0)
    backoff.link_down(100.0)
    attempts = schedule(backoff, 100.0, 100.0 + outage)
    assert attempts[-1] - (100.0 + outage) <= 1.0


def test_a_pbx_down_long_is_retried_at_the_configured_cap() -> None:
    backoff = ReconnectBackoff(30.0, lambda: WORST, now=0.0)
    backoff.link_up(0.0)
    backoff.link_down(100.0)
    attempts = schedule(backoff, 100.0, 100.0 + RECENT_WINDOW + 1)
    assert backoff.next_delay(attempts[-1]) == 30.0
    assert len(attempts) < RECENT_WINDOW + 5  # at most about one attempt a second before


def test_start_up_counts_as_recently_up() -> None:
    backoff = ReconnectBackoff(30.0, lambda: WORST, now=50.0)
    assert [backoff.next_delay(50.0 + t) for t in range(4)] == [0.25, 0.5, 1.0, 1.0]
    # out of the window the doubling goes on above the short cap: 4 s, 8 s... up to 30 s
    assert backoff.next_delay(50.0 + RECENT_WINDOW) == 4.0


def test_a_healthy_link_resets_the_backoff_a_flapping_one_does_not() -> None:
    backoff = ReconnectBackoff(30.0, lambda: WORST, now=0.0)
    for t in range(4):
        backoff.next_delay(float(t))
    backoff.link_up(10.0)
    backoff.link_down(10.0 + HEALTHY_AFTER / 2)  # dropped right after the login
    assert backoff.next_delay(16.0) == 1.0
    backoff.link_up(20.0)
    backoff.link_down(20.0 + HEALTHY_AFTER)
    assert backoff.next_delay(31.0) == 0.25


def test_jitter_scales_the_delay_and_a_small_cap_wins() -> None:
    backoff = ReconnectBackoff(0.05, lambda: 0.5, now=0.0)
    assert backoff.next_delay(0.0) == 0.025
    assert backoff.next_delay(1.0) == 0.025
    assert not backoff.link_down(2.0)  # never up: nothing to note
