"""However long the database is away, a process tries to reach it again at least every second."""

from __future__ import annotations

from itertools import islice

from infra.backends.postgres.pool import RECONNECT_EVERY, _SteadyBackoff
from infra.follower import RECONNECT_MAX, reconnect_pauses


def test_the_pools_reconnect_delay_stops_growing_at_a_second() -> None:
    # A pool's attempt to reconnect, failing again and again for a day
    attempt = _SteadyBackoff(timeout=86_400.0)
    delays = []
    for failure in range(1000):
        attempt.update_delay(now=float(failure))
        delays.append(attempt.delay)
    # It starts within a quarter of a second (with the library's jitter), and never waits
    # more than a second however many attempts failed before
    assert delays[0] < 0.3
    assert max(delays) <= RECONNECT_EVERY == 1.0
    assert delays[-1] == RECONNECT_EVERY


def test_the_index_listener_tries_again_at_least_twice_a_second() -> None:
    pauses = list(islice(reconnect_pauses(), 1000))
    assert pauses[0] < 0.1
    assert max(pauses) == pauses[-1] == RECONNECT_MAX <= 0.5
