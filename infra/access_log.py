"""The access log: one line per request, built and redacted on the loop, written by a thread.

`logging` formats each record on the caller's thread (a LogRecord, a filter, a formatter and a
lock per line), which costs more than the request it describes. Here the event loop only builds
the finished line (the path and query cut by `redact`, so no token reaches it beyond its display
prefix) and appends it to a bounded buffer; a background thread joins what has gathered and
writes it to standard output in a few syscalls. When the buffer is full (the writer cannot keep
up), the line is dropped and counted, and the count is logged as a warning: a request never
waits for the log.

Plain lines follow the service's log format (`time LEVEL logger: message`); JSON lines are the
objects `infra.logging` writes, with the request's fields as their own keys as well.
"""

from __future__ import annotations

import collections
import logging
import sys
import threading
import time
from datetime import UTC, datetime
from typing import IO, Final

import msgspec

from infra.logging import redact
from infra.metrics import TALLY

LOGGER: Final = "anthra.access"
MAX_BUFFERED: Final = 8192  # lines; about 1 MB, several seconds of a full load
_FLUSH_INTERVAL: Final = 0.05  # seconds between the writer's looks at the buffer
_DROP_REPORT_INTERVAL: Final = 10.0
_CHUNK: Final = 4096  # one write() at most this long: a pipe keeps it whole (PIPE_BUF)

_METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

log = logging.getLogger("anthra.access_log")


class AccessLog:
    """A bounded buffer of finished access log lines and the thread that writes them."""

    def __init__(
        self,
        *,
        json: bool = False,
        stream: IO[str] | None = None,
        max_buffered: int = MAX_BUFFERED,
        flush_interval: float = _FLUSH_INTERVAL,
    ) -> None:
        self.json = json
        self._stream = stream
        self.max_buffered = max_buffered
        self.flush_interval = flush_interval
        self.dropped = 0
        self._reported = 0
        self._last_report = 0.0
        self._lines: collections.deque[str] = collections.deque()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._second = -1
        self._stamp = ""
        self._lock = threading.Lock()

    def line(
        self,
        client: str,
        method: str,
        target: str,
        http_version: str,
        status: int,
        request_id: str,
    ) -> None:
        """Queue the access log line of one answered request; drop it if the buffer is full.

        The target, the one field a caller writes freely, is cut by `redact` here, and so is a
        method that is not a plain HTTP one; the request id is one the front door checked or
        made, the client the server's or a trusted proxy's address."""
        if len(self._lines) >= self.max_buffered:
            self.dropped += 1
            TALLY.dropped_lines += 1
            return
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second = second
            stamp = datetime.fromtimestamp(second, UTC)
            self._stamp = (
                stamp.strftime("%Y-%m-%dT%H:%M:%S") if self.json else f"{stamp:%Y-%m-%d %H:%M:%S}"
            )
        millis = int((now - second) * 1000)
        target = redact(target)
        if method not in _METHODS:
            method = redact(method)
        message = f'{client} - "{method} {target} HTTP/{http_version}" {status} {request_id}'
        if self.json:
            text = msgspec.json.encode(
                {
                    "time": f"{self._stamp}.{millis:03d}+00:00",
                    "level": "INFO",
                    "logger": LOGGER,
                    "message": message,
                    "client": client,
                    "method": method,
                    "target": target,
                    "http_version": http_version,
                    "status": status,
                    "request_id": request_id,
                }
            ).decode()
        else:
            text = f"{self._stamp},{millis:03d} INFO {LOGGER}: {message}"
        self._lines.append(text)

    def start(self) -> None:
        """Start the writer thread (once)."""
        with self._lock:
            if self._thread is not None:
                return
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="access-log", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 1.0) -> None:
        """Stop the writer after it has written every line queued so far."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is None:
            self.flush()
            return
        self._stop.set()
        thread.join(timeout)

    def flush(self) -> None:
        """Write every queued line now."""
        lines = self._lines
        chunk: list[str] = []
        size = 0
        while lines:
            try:
                line = lines.popleft()
            except IndexError:
                break
            if size + len(line) >= _CHUNK and chunk:
                self._write("".join(chunk))
                chunk, size = [], 0
            chunk.append(line + "\n")
            size += len(line) + 1
        if chunk:
            self._write("".join(chunk))
        self._report_drops()

    def _write(self, text: str) -> None:
        stream = self._stream or sys.stdout
        try:
            stream.write(text)
            stream.flush()
        except (OSError, ValueError):
            # A closed or broken stdout: the lines are lost, the requests are not.
            self.dropped += text.count("\n")

    def _report_drops(self) -> None:
        dropped = self.dropped
        if dropped == self._reported:
            return
        now = time.monotonic()
        if now - self._last_report < _DROP_REPORT_INTERVAL and not self._stop.is_set():
            return
        log.warning(
            "access log: %d lines dropped since the last report (%d in all): the log could not "
            "keep up with the requests",
            dropped - self._reported,
            dropped,
        )
        self._reported, self._last_report = dropped, now

    def _run(self) -> None:
        while not self._stop.wait(self.flush_interval):
            self.flush()
        self.flush()


def access_log_enabled(level: str, setting: bool) -> bool:
    """Whether access lines are written: on unless turned off, or the level is above INFO."""
    return setting and logging.getLevelName(level.upper()) <= logging.INFO
