"""A caller's budget for the database runs from when its request was queued for a handler
thread, not from when a thread was free: a burst never answers in turn, seconds late."""

from __future__ import annotations

import threading
import time

import pytest

from ledger.deadline import HandlerThreads, bounded, time_left


@bounded(0.5)
def budget_left() -> float:
    return time_left()


@pytest.mark.parametrize(("queued_for", "left_at_most"), [(0.0, 0.5), (0.3, 0.25), (0.7, 0.0)])
def test_the_time_a_job_waited_for_a_thread_comes_off_its_budget(
    queued_for: float, left_at_most: float
) -> None:
    release = threading.Event()
    with HandlerThreads(1) as threads:
        if queued_for:
            threads.submit(release.wait)
            threading.Timer(queued_for, release.set).start()
        left = threads.submit(budget_left).result()
    assert left <= left_at_most
    assert left > left_at_most - 0.25 or left_at_most == 0.0


def test_outside_the_handler_threads_and_for_a_job_not_kept_waiting_the_budget_is_whole() -> None:
    assert 0.4 < budget_left() <= 0.5
    with HandlerThreads(1) as threads:
        threads.submit(time.sleep, 0.7)
        assert threads.submit(budget_left).result() <= 0.0  # it waited its budget out
        # The same thread, free at once for the next job, keeps no trace of the last one's wait
        assert 0.4 < threads.submit(budget_left).result() <= 0.5
