"""How long the database may take: a deadline per operation, and the error when it is missed.

An operation done for a caller (a command, a query) runs `within(REQUEST_BUDGET)`: every wait
for a pooled connection ends at the deadline, and a connection still busy then is cut (see
infra.backends.postgres.watchdog), so the caller has an answer, or a 503, in well under three
seconds whatever the database does: stopped, locked, or silent behind a cut network. Deadlines nest;
the earlier one holds. Background work sets its own, shorter or longer, or none.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from contextvars import ContextVar
from functools import wraps
from time import monotonic
from typing import Any, Final, ParamSpec, TypeVar

import psycopg
from eventsourcing import persistence

# What a caller waits for at most, the 503's own round trip aside.
REQUEST_BUDGET: Final = 2.0
# Errors that mean the database did not answer, as psycopg and the library raise them.
CONNECTION_ERRORS: Final = (
    psycopg.OperationalError,
    psycopg.InterfaceError,
    persistence.OperationalError,
    persistence.InterfaceError,
)

_deadline: ContextVar[float] = ContextVar("anthra_store_deadline", default=math.inf)
# When the job a handler thread is running was queued: a caller's budget runs from then, not
# from when a thread was free (a thread-local, as the job runs in a context copied before).
_job = threading.local()

P = ParamSpec("P")
R = TypeVar("R")


class StoreUnavailable(Exception):
    """The database could not answer in time; the operation that raised this changed nothing."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class OutcomeUnknown(StoreUnavailable):
    """The database stopped answering while a write was committing: it may have been recorded."""


@contextmanager
def within(seconds: float) -> Iterator[float]:
    """Run the block under a deadline `seconds` from now, or the enclosing one if earlier."""
    until = min(_deadline.get(), monotonic() + seconds)
    token = _deadline.set(until)
    try:
        yield until
    finally:
        _deadline.reset(token)


@contextmanager
def extended(seconds: float) -> Iterator[float]:
    """A fresh deadline that may outlast the enclosing one: to learn how a write ended."""
    token = _deadline.set(monotonic() + seconds)
    try:
        yield _deadline.get()
    finally:
        _deadline.reset(token)


def deadline() -> float:
    """The monotonic instant the current operation must end by; infinity if none."""
    return _deadline.get()


def time_left() -> float:
    return _deadline.get() - monotonic()


def unavailable(error: BaseException) -> StoreUnavailable:
    """A StoreUnavailable saying why: the error's class and the first line of its message."""
    if isinstance(error, StoreUnavailable):
        return error
    lines = str(error).strip().splitlines()
    detail = f": {lines[0][:200]}" if lines else ""
    return StoreUnavailable(f"{type(error).__name__}{detail}")


def bounded(seconds: float = REQUEST_BUDGET) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Run a method within `seconds`; a database that does not answer raises StoreUnavailable."""

    def decorate(method: Callable[P, R]) -> Callable[P, R]:
        @wraps(method)
        def call(*args: P.args, **kwargs: P.kwargs) -> R:
            queued_at: float | None = getattr(_job, "queued_at", None)
            with within(seconds if queued_at is None else queued_at + seconds - monotonic()):
                try:
                    return method(*args, **kwargs)
                except CONNECTION_ERRORS as e:
                    raise unavailable(e) from e

        return call

    return decorate


class HandlerThreads(ThreadPoolExecutor):
    """The threads that run callers' operations. An operation's budget starts when its job is
    queued, so when a burst of requests outnumbers the threads (writes during a lock, say),
    the ones that waited their budget out answer 503 at once instead of in turn, seconds late."""

    def submit(self, fn: Callable[..., R], /, *args: Any, **kwargs: Any) -> Future[R]:
        return super().submit(_run_queued, monotonic(), fn, *args, **kwargs)


def _run_queued(queued_at: float, fn: Callable[..., R], *args: Any, **kwargs: Any) -> R:
    _job.queued_at = queued_at
    try:
        return fn(*args, **kwargs)
    finally:
        _job.queued_at = None
