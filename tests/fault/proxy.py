"""A TCP proxy between the service and PostgreSQL that can cut the network without closing it.

`cut()` makes it a black hole: bytes in either direction are held, new connections are accepted
and then left unanswered, and nothing is closed, so every client waits as it would behind a
dropped route or a frozen server. `heal()` lets everything held through, as a network would
once it is back.
"""

from __future__ import annotations

import socket
import threading

from tests.e2e.server import free_port


class TcpProxy:
    """127.0.0.1:port → target_port, one thread per direction of each connection."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self._flowing = threading.Event()
        self._flowing.set()
        self._closed = threading.Event()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._listener.settimeout(0.1)
        threading.Thread(target=self._accept, name="proxy-accept", daemon=True).start()

    def url(self, database_url: str) -> str:
        """The same database URL, through this proxy."""
        return database_url.replace(f":{self.target_port}/", f":{self.port}/", 1)

    def cut(self) -> None:
        self._flowing.clear()

    def heal(self) -> None:
        self._flowing.set()

    def close(self) -> None:
        self._closed.set()
        self._flowing.set()
        self._listener.close()
        with self._lock:
            for s in self._sockets:
                s.close()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._connect, args=(client,), daemon=True).start()

    def _connect(self, client: socket.socket) -> None:
        # A connection made during a cut waits, unanswered, for the network to come back.
        self._flowing.wait()
        try:
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
        except OSError:
            client.close()
            return
        with self._lock:
            self._sockets += [client, upstream]
        for source, target in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pump, args=(source, target), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        source.settimeout(0.1)
        while not self._closed.is_set():
            self._flowing.wait()
            try:
                data = source.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                data = b""
            # Read just before a cut: held, like the rest, until the network is back.
            self._flowing.wait()
            try:
                if not data:
                    target.shutdown(socket.SHUT_WR)
                    return
                target.sendall(data)
            except OSError:
                return
