"""uvicorn's httptools protocol with a bound on a request's head while it arrives, a deadline
for the whole request to arrive, and one write per answer.

The front door answers 431 for headers over the limit, but only once the server has read them
all: uvicorn keeps every header byte in memory first, with no bound of its own (200 MB of one
header cost 400 MB here). This protocol stops reading a head that has grown far past the limit
and answers the same 431 itself. `anthra-keys serve` runs it; the front door still decides the
exact limit for anything under the bound.

uvicorn has no deadline for a request to arrive either: a connection that sends nothing, or a
head or a body a byte at a time, was held open for as long as the client liked, so a few
thousand slow clients (slowloris) held every file descriptor. Here a request must arrive whole
within `ANTHRA_REQUEST_READ_TIMEOUT` (10 s) of its first byte (of the connection, for the
first): a head still incomplete then is answered `408` and the connection closed; a body still
incomplete is cut off (the app sees the client gone). An answer being written, however long (the
event streams), is never cut: the deadline covers what the client sends, not what it is sent.

uvicorn writes an answer's head and its body with one `write` each, and the event loop sends
each at once: two syscalls per answer, the largest single cost of a small request here. The
protocol's transport gathers what is written while the loop runs one step and sends it together
before the loop looks at the sockets again.
"""

from __future__ import annotations

import asyncio
import functools
import os
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from api import problems

# Room for the request line (the edge allows 8 KiB of target) and for chunks that carry the
# end of one request's head with the start of its body.
_SLACK = 64 * 1024


@functools.cache
def read_timeout() -> float:
    """Seconds a request may take to arrive, head and body, from its first byte."""
    from infra.settings import load_settings

    return load_settings(os.environ).request_read_timeout


@functools.cache
def head_bound() -> int:
    """Bytes of request head read before giving up: well past the edge's own limit."""
    from infra.settings import load_settings

    return 4 * load_settings(os.environ).max_header_bytes + _SLACK


def _answer(status_line: bytes, error: str, description: str) -> bytes:
    """A whole answer that closes the connection, for a request the app never sees."""
    body = problems.error_body(error, description)
    return (
        status_line + b"\r\n"
        b"content-type: application/json\r\n"
        b"cache-control: no-store\r\n"
        b"connection: close\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )


def _refusal() -> bytes:
    return _answer(
        b"HTTP/1.1 431 Request Header Fields Too Large",
        "request_headers_too_large",
        "the request's headers exceed the limit; see ANTHRA_MAX_HEADER_BYTES",
    )


def _not_http() -> bytes:
    return _answer(
        b"HTTP/1.1 400 Bad Request",
        "invalid_request",
        "the request is not valid HTTP/1.1 (its request line, a header, its length or its body)",
    )


def _too_slow() -> bytes:
    return _answer(
        b"HTTP/1.1 408 Request Timeout",
        "request_timeout",
        "the request did not arrive in time; see ANTHRA_REQUEST_READ_TIMEOUT",
    )


class GatheringTransport:
    """A transport whose writes within one step of the loop leave in one `write`."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        pending = self._pending
        if not pending:
            self._loop.call_soon(self._flush)
        pending.append(data)

    def _flush(self) -> None:
        pending = self._pending
        if not pending:
            return
        data = pending[0] if len(pending) == 1 else b"".join(pending)
        pending.clear()
        if not self._transport.is_closing():
            self._transport.write(data)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        # Everything else (is_closing, pause_reading, get_extra_info, ...) is the transport's.
        return getattr(self._transport, name)


class HeadBoundedHttpTools(HttpToolsProtocol):
    """Counts the bytes that arrive between one request's end and the next one's headers, gives
    each request a deadline to arrive whole, and sends what one step of the loop writes in one
    go."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._reading_head = True
        self._head_bytes = 0
        self._bound = head_bound()
        self._read_timeout = read_timeout()
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(GatheringTransport(transport, self.loop))  # type: ignore[arg-type]
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._deadline = self.loop.call_later(self._read_timeout, self._read_timed_out)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _read_timed_out(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        cycle = self.cycle
        earlier_unanswered = (
            self._reading_head and cycle is not None and not cycle.response_complete
        )
        if self.pipeline or earlier_unanswered:
            # A pipelined request waits for an earlier one's answer (and uvicorn stops reading
            # meanwhile): that time is not its own, and no answer may go out of turn.
            self._arm()
            return
        if cycle is None or self._reading_head or not cycle.response_started:
            # Nothing of an answer has gone out: the 408 is the only one (once the client is
            # gone, uvicorn drops whatever the app, still waiting for the body, answers).
            self.transport.write(_too_slow())
        self.transport.close()

    def send_400_response(self, msg: str) -> None:
        # uvicorn's answer to what is not HTTP/1.1 (a malformed request line, two lengths, a
        # length with a chunked body, a fragment), with the JSON error body of every refusal.
        if not self.transport.is_closing():
            self.transport.write(_not_http())
        self.transport.close()

    def on_url(self, url: bytes) -> None:
        if b"#" in url:
            # A request target never has a fragment (RFC 9112 3.2); one may hold a token, and
            # the parser would drop it silently and serve the rest. Raised here, it is the
            # parser's error, answered by send_400_response.
            raise ValueError("a fragment in the request target")
        super().on_url(url)

    def on_message_begin(self) -> None:
        # The first byte of a request: the connection's first is already on the clock.
        if self._deadline is None:
            self._arm()
        super().on_message_begin()

    def data_received(self, data: bytes) -> None:
        if self._reading_head:
            self._head_bytes += len(data)
            if self._head_bytes > self._bound:
                if not self.transport.is_closing():
                    self.transport.write(_refusal())
                    self.transport.close()
                return
        super().data_received(data)

    def on_headers_complete(self) -> None:
        self._reading_head = False
        self._head_bytes = 0
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()
        self._reading_head = True
