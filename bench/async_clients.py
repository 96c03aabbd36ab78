"""HTTP/1.1 clients on asyncio, cheap enough that the server, not the client, is measured.

Each client holds one keep-alive connection and sends one request at a time: a request is
bytes written to the socket, an answer is its status line, headers and Content-Length body.
The benches that drive a server with C clients at once run them all on one event loop in one
thread, which costs far less CPU per request than a thread and an httpx client each.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit


class Answer:
    """A response: status and body (headers are read and dropped)."""

    __slots__ = ("body", "status")

    def __init__(self, status: int, body: bytes) -> None:
        self.status = status
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)


class Client:
    """One keep-alive connection to one server."""

    def __init__(self, base: str) -> None:
        parts = urlsplit(base)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self._authority = f"{self.host}:{self.port}".encode()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self._reader, self._writer = await asyncio.open_connection(self.host, self.port)

    async def request(
        self,
        method: str,
        path: str,
        headers: dict[str, str] | None = None,
        body: Any = None,
    ) -> Answer:
        if self._writer is None:
            await self.open()
        assert self._reader is not None and self._writer is not None
        payload = b"" if body is None else json.dumps(body).encode()
        lines = [f"{method} {path} HTTP/1.1".encode(), b"Host: " + self._authority]
        lines += [f"{name}: {value}".encode() for name, value in (headers or {}).items()]
        if body is not None:
            lines.append(b"Content-Type: application/json")
        lines.append(b"Content-Length: " + str(len(payload)).encode())
        self._writer.write(b"\r\n".join(lines) + b"\r\n\r\n" + payload)
        head = await self._reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
        return Answer(status, await self._reader.readexactly(length) if length else b"")

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError):
                await self._writer.wait_closed()
            self._writer = None


def run_clients(
    base: str, count: int, ops: int, op: Callable[[Client, int], Awaitable[None]]
) -> tuple[float, list[float]]:
    """op(client, i) for i in range(ops), `count` clients at once on one event loop; the wall
    seconds from the first request to the last answer, and each op's latency in ms."""

    async def main() -> tuple[float, list[float]]:
        clients = [Client(base) for _ in range(count)]
        await asyncio.gather(*(c.open() for c in clients))
        counter = itertools.count()
        latencies: list[float] = []

        async def drive(client: Client) -> None:
            while (i := next(counter)) < ops:
                started = time.perf_counter()
                await op(client, i)
                latencies.append((time.perf_counter() - started) * 1000)

        try:
            started = time.perf_counter()
            await asyncio.gather(*(drive(c) for c in clients))
            return time.perf_counter() - started, latencies
        finally:
            await asyncio.gather(*(c.close() for c in clients))

    return asyncio.run(main())
