"""One POST of a signed webhook message to an endpoint, guarded against server-side request
forgery: the host is resolved here, every address it resolves to must be public (or loopback,
when the operator allows it for tests), and the connection goes to the address that was
checked, so a second lookup cannot swap it. Redirects are answers, never followed. The timeout
bounds the whole exchange, not each read: an endpoint that answers a byte at a time is cut at
the timeout all the same."""

from __future__ import annotations

import contextlib
import http.client
import socket
import ssl
import threading
from typing import Final
from urllib.parse import urlsplit

from domain.webhooks import ip_address, is_public

USER_AGENT: Final = "anthra-webhooks/1"
# Enough of an answer to see that one came; the body is not kept.
_MAX_ANSWER = 64 * 1024


class Refused(Exception):
    """The endpoint's host is not one deliveries may go to."""


def allowed_address(host: str, port: int, allow_loopback: bool) -> str:
    """The address to connect to for `host`; Refused if any it resolves to is not public."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as e:
        raise Refused(f"cannot resolve {host}: {e.strerror or e}") from None
    addresses = []
    for info in infos:
        address = ip_address(str(info[4][0]))
        if address is None:
            continue
        if not (is_public(address) or (allow_loopback and address.is_loopback)):
            raise Refused(f"{host} resolves to {address}, which is not a public address")
        addresses.append(str(address))
    if not addresses:
        raise Refused(f"{host} resolves to no address")
    return addresses[0]


class _PinnedHTTP(http.client.HTTPConnection):
    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self.address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self.address, self.port), self.timeout)


class _PinnedHTTPS(http.client.HTTPSConnection):
    def __init__(
        self, host: str, port: int, address: str, timeout: float, context: ssl.SSLContext
    ) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self.address = address
        self.tls = context

    def connect(self) -> None:
        sock = socket.create_connection((self.address, self.port), self.timeout)
        # The certificate is checked against the URL's host name, not the address.
        self.sock = self.tls.wrap_socket(sock, server_hostname=self.host)


def send(
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    timeout: float,
    allow_loopback: bool = False,
) -> tuple[int | None, str]:
    """POST the body; (the status code, "") on an answer, (None, why) when none came."""
    parts = urlsplit(url)
    https = parts.scheme == "https"
    host = parts.hostname or ""
    port = parts.port or (443 if https else 80)
    try:
        address = allowed_address(host, port, allow_loopback)
    except Refused as e:
        return None, str(e)
    conn: http.client.HTTPConnection = (
        _PinnedHTTPS(host, port, address, timeout, ssl.create_default_context())
        if https
        else _PinnedHTTP(host, port, address, timeout)
    )
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    # Each socket operation has the timeout; at the deadline the socket is shut from here, which
    # ends whatever read or write is under way.
    cut = threading.Event()
    watchdog = threading.Timer(timeout, _cut, (conn, cut))
    watchdog.daemon = True
    watchdog.start()
    try:
        conn.request(
            "POST",
            path,
            body=body,
            headers={
                **headers,
                "Content-Type": "application/json",
                "User-Agent": USER_AGENT,
            },
        )
        answer = conn.getresponse()
        answer.read(_MAX_ANSWER)
        return answer.status, ""
    except (OSError, http.client.HTTPException) as e:
        if cut.is_set():
            return None, f"timed out: no whole answer within {timeout:g} s"
        return None, f"{type(e).__name__}: {e}"[:200]
    finally:
        watchdog.cancel()
        conn.close()


def _cut(conn: http.client.HTTPConnection, cut: threading.Event) -> None:
    cut.set()
    sock = conn.sock
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
