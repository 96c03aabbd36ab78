"""How long the database may take: a deadline per operation, and the error when it is missed.

An operation done for a caller (a command, a query) runs `within(REQUEST_BUDGET)`: every wait
for a pooled connection ends at the deadline, and a connection still busy then is cut (see
infra.backends.postgres.watchdog), so the caller has an answer, or a 503, in well under three
seconds whatever the database does: stopped, locked, or silent behind a cut network. Deadlines nest;
the earlier one holds. Background work sets its own, shorter or longer, or none.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import wraps
from time import monotonic
from typing import Final, ParamSpec, TypeVar

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
            with within(seconds):
                try:
                    return method(*args, **kwargs)
                except CONNECTION_ERRORS as e:
                    raise unavailable(e) from e

        return call

    return decorate
