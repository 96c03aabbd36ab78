"""Cuts a database connection still busy at its deadline.

A server that stops answering, or a network that drops packets without closing anything, leaves
a query waiting for a reply that will not come: psycopg waits on the socket for as long as the
kernel keeps it open, which is minutes. Shutting the socket down from another thread ends that
wait at once with an OperationalError, and the pool then discards the connection.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

log = logging.getLogger("anthra.watchdog")


class Watchdog:
    """One thread that cuts the connections registered with it when their deadline passes."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._wake = threading.Condition()
        self._due: dict[int, tuple[float, Any]] = {}
        self._next = math.inf  # the deadline the thread is sleeping towards
        self._thread: threading.Thread | None = None
        self._closed = False

    @contextmanager
    def watch(self, conn: Any, until: float) -> Iterator[None]:
        """Cut `conn` if the block is still running at `until` (monotonic); infinity: never."""
        if until == math.inf:
            yield
            return
        key = id(conn)
        with self._wake:
            self._due[key] = (until, conn)
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(
                    target=self._run, name=f"watchdog-{self.name}", daemon=True
                )
                self._thread.start()
            elif until < self._next:
                self._wake.notify()
        try:
            yield
        finally:
            with self._wake:
                self._due.pop(key, None)

    def close(self) -> None:
        with self._wake:
            self._closed = True
            self._wake.notify()

    def _run(self) -> None:
        with self._wake:
            while not self._closed:
                now = time.monotonic()
                for key, (until, conn) in list(self._due.items()):
                    if until <= now:
                        del self._due[key]
                        cut(conn)
                self._next = min((until for until, _ in self._due.values()), default=math.inf)
                self._wake.wait(None if self._next == math.inf else self._next - now)


def cut(conn: Any) -> None:
    """Shut the connection's socket down: whoever waits on it gets an error at once."""
    try:
        fd = conn.pgconn.socket
        duplicate = socket.socket(fileno=os.dup(fd))
    except Exception:
        return  # already closed: nothing is waiting on it
    try:
        duplicate.shutdown(socket.SHUT_RDWR)
        log.debug("cut a database connection that missed its deadline")
    except OSError:
        pass
    finally:
        duplicate.close()
