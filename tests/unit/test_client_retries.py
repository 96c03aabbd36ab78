"""When the client tries again: waiting as Retry-After asks, backing off, and giving up in time."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from anthra_keys_client.retrying import RetryPolicy, parse_retry_after

POLICY = RetryPolicy(retries=4, within=15.0, first_delay=0.25, max_delay=4.0)


def test_backoff_doubles_up_to_its_cap_with_jitter_in_its_back_half() -> None:
    lowest = [POLICY.delay(retry, None, jitter=0.0) for retry in range(1, 8)]
    highest = [POLICY.delay(retry, None, jitter=0.999999) for retry in range(1, 8)]
    assert lowest == [0.125, 0.25, 0.5, 1.0, 2.0, 2.0, 2.0]
    assert highest == pytest.approx([0.25, 0.5, 1.0, 2.0, 4.0, 4.0, 4.0])


def test_retry_after_is_never_waited_less_than() -> None:
    assert POLICY.delay(1, retry_after=1.0, jitter=0.5) == 1.0
    # A backoff already longer than Retry-After stands.
    assert POLICY.delay(5, retry_after=1.0, jitter=0.0) == 2.0


def test_retries_are_bounded_in_number() -> None:
    assert POLICY.next_delay(4, elapsed=0.0, retry_after=None, jitter=0.0) == 1.0
    assert POLICY.next_delay(5, elapsed=0.0, retry_after=None, jitter=0.0) is None
    assert RetryPolicy(retries=0).next_delay(1, 0.0, None, 0.0) is None


def test_no_retry_starts_past_the_time_allowed() -> None:
    # Retry-After: 1 at 14.5 s would start the retry at 15.5 s: give up now instead.
    assert POLICY.next_delay(2, elapsed=14.5, retry_after=1.0, jitter=0.0) is None
    assert POLICY.next_delay(2, elapsed=13.9, retry_after=1.0, jitter=0.0) == 1.0
    # A Retry-After longer than all the time allowed is not waited for at all.
    assert POLICY.next_delay(1, elapsed=0.0, retry_after=3600.0, jitter=0.0) is None


def test_retry_after_in_seconds_or_as_an_http_date() -> None:
    assert parse_retry_after("1") == 1.0
    assert parse_retry_after(" 120 ") == 120.0
    now = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("Sat, 28 Nov 2026 12:00:30 GMT", now=now) == 30.0
    # A date already past means now.
    assert parse_retry_after("Sat, 28 Nov 2026 11:00:00 GMT", now=now) == 0.0


@pytest.mark.parametrize("value", [None, "", "soon", "-1", "1.5", "²", "Sat, 99 Nov 2026"])
def test_an_unreadable_retry_after_is_none(value: str | None) -> None:
    assert parse_retry_after(value) is None
