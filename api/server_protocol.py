"""uvicorn's httptools protocol with a bound on a request's head while it arrives.

The edge layer answers 431 for headers over the limit, but only once the server has read them
all: uvicorn keeps every header byte in memory first, with no bound of its own (200 MB of one
header cost 400 MB here). This protocol stops reading a head that has grown far past the limit
and answers the same 431 itself. `anthra-keys serve` runs it; the edge still decides the exact
limit for anything under the bound.
"""

from __future__ import annotations

import functools
import os
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from api import problems

# Room for the request line (the edge allows 8 KiB of target) and for chunks that carry the
# end of one request's head with the start of its body.
_SLACK = 64 * 1024


@functools.cache
def head_bound() -> int:
    """Bytes of request head read before giving up: well past the edge's own limit."""
    from infra.settings import load_settings

    return 4 * load_settings(os.environ).max_header_bytes + _SLACK


def _refusal() -> bytes:
    body = problems.error_body(
        "request_headers_too_large",
        "the request's headers exceed the limit; see ANTHRA_MAX_HEADER_BYTES",
    )
    return (
        b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
        b"content-type: application/json\r\n"
        b"cache-control: no-store\r\n"
        b"connection: close\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )


class HeadBoundedHttpTools(HttpToolsProtocol):
    """Counts the bytes that arrive between one request's end and the next one's headers."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._reading_head = True
        self._head_bytes = 0
        self._bound = head_bound()

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
        super().on_message_complete()
        self._reading_head = True
