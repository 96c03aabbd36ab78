"""One webhook POST against a real local HTTP server: loopback only when allowed, redirects
answered and never followed, a slow endpoint cut at the timeout, names resolved and checked."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from infra.webhook_sender import send


class Endpoint:
    def __init__(self) -> None:
        self.paths: list[str] = []
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                endpoint.paths.append(self.path)
                if self.path == "/slow":
                    time.sleep(1.0)
                if self.path == "/moved":
                    self.send_response(302)
                    self.send_header("Location", "/elsewhere")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    found = Endpoint()
    yield found
    found.server.shutdown()
    found.server.server_close()


def test_loopback_is_refused_unless_allowed(endpoint: Endpoint) -> None:
    status, why = send(f"{endpoint.base}/in", b"{}", {}, timeout=5)
    assert status is None and "not a public address" in why
    name = endpoint.base.replace("127.0.0.1", "localhost")
    assert send(f"{name}/in", b"{}", {}, timeout=5)[0] is None
    assert endpoint.paths == []
    assert send(f"{endpoint.base}/in", b"{}", {}, timeout=5, allow_loopback=True) == (200, "")
    assert endpoint.paths == ["/in"]


def test_a_redirect_is_an_answer_never_followed(endpoint: Endpoint) -> None:
    status, _ = send(f"{endpoint.base}/moved", b"{}", {}, timeout=5, allow_loopback=True)
    assert status == 302
    assert endpoint.paths == ["/moved"]


def test_a_slow_endpoint_is_cut_at_the_timeout(endpoint: Endpoint) -> None:
    status, why = send(f"{endpoint.base}/slow", b"{}", {}, timeout=0.2, allow_loopback=True)
    assert status is None and "timed out" in why


def test_a_name_that_does_not_resolve_is_refused() -> None:
    status, why = send("https://no-such-host.invalid/in", b"{}", {}, timeout=5)
    assert status is None and "cannot resolve" in why


@pytest.mark.parametrize("address", ["10.1.2.3", "169.254.169.254", "::1", "fd00::5", "100.64.0.1"])
def test_a_name_resolving_to_any_private_address_is_refused(
    monkeypatch: pytest.MonkeyPatch, endpoint: Endpoint, address: str
) -> None:
    # The name resolves to a public address and to a private one: the private one refuses it
    answers = [("93.184.215.14", 443), (address, 443)]
    monkeypatch.setattr(
        "infra.webhook_sender.socket.getaddrinfo",
        lambda *_, **__: [(0, 0, 0, "", a) for a in answers],
    )
    status, why = send("https://hooks.example.com/in", b"{}", {}, timeout=5)
    assert status is None and "not a public address" in why


def dripping_endpoint(answer: bytes, pause: float) -> tuple[str, threading.Event]:
    """An endpoint that reads the request, then sends `answer` one byte every `pause` s."""
    import socket

    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        conn, _ = listener.accept()
        with conn, listener:
            conn.recv(65536)
            for byte in answer:
                if stop.wait(pause):
                    return
                try:
                    conn.sendall(bytes([byte]))
                except OSError:
                    return
            stop.wait(30)

    threading.Thread(target=serve, daemon=True).start()
    return f"http://127.0.0.1:{listener.getsockname()[1]}/in", stop


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nX-Padding: " + b"a" * 200 + b"\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 400\r\n\r\n" + b"a" * 400,
    ],
    ids=["headers a byte at a time", "body a byte at a time"],
)
def test_an_endpoint_answering_a_byte_at_a_time_is_cut_at_the_timeout(answer: bytes) -> None:
    # Every byte comes well within the timeout; the whole answer never does.
    url, stop = dripping_endpoint(answer, pause=0.05)
    started = time.monotonic()
    try:
        status, why = send(url, b"{}", {}, timeout=0.5, allow_loopback=True)
    finally:
        stop.set()
    assert status is None and "timed out" in why
    assert time.monotonic() - started < 2.0
