"""The edge of the service: how much a request may bring, and whom to believe about its origin.

`api.front_door.FrontDoor`, the outermost ASGI layer, applies these rules. It refuses oversized
headers (431) and request targets (414), takes the client address, scheme and host from
`X-Forwarded-For`, `-Proto` and `-Host` only when the peer is a configured trusted proxy, and
refuses a Host the service was not told to serve (421). It rewrites `scope["client"]`,
`scope["scheme"]` and the Host header in place, so every later layer (the access log, audit
context, the failed-authentication limiter, the same-origin check, metadata URLs) sees the
trusted values and nothing else reads those three headers. `Forwarded` (RFC 7239) is not read:
a proxy that sets only `X-Forwarded-*` would pass a client's own `Forwarded` through.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Final

from litestar.types import Scope

from api import problems
from infra.settings import is_host_name

# The path and query a request may carry; a token-free URL of the API is far shorter.
MAX_TARGET_BYTES: Final = 8 * 1024
_DEFAULT_PORTS: Final = {"http": "80", "https": "443"}
_SCHEMES: Final = {b"http": "http", b"https": "https"}
_CACHE_SIZE: Final = 4096


def split_authority(authority: str) -> tuple[str, str] | None:
    """(host, port) of a Host header or URL authority, lower-cased; None if it is not one."""
    authority = authority.strip().lower()
    if authority.endswith("]"):
        host, port = authority, ""
    else:
        host, sep, port = authority.rpartition(":")
        if not sep:
            host, port = authority, ""
        elif not (port.isascii() and port.isdigit() and len(port) <= 5):
            return None
    return (host, port) if is_host_name(host) else None


def origin(scheme: str, authority: str) -> str:
    """`scheme://host[:port]`, lower-cased, without the scheme's default port; "" if invalid."""
    scheme = scheme.lower()
    parts = split_authority(authority)
    if scheme not in _DEFAULT_PORTS or parts is None:
        return ""
    host, port = parts
    if port and port.lstrip("0") != _DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}:{int(port)}"
    return f"{scheme}://{host}"


def origin_of_url(url: str) -> str:
    """The origin of a URL or an Origin header value, as `origin` spells it; "" if none."""
    scheme, sep, rest = url.strip().partition("://")
    if not sep:
        return ""
    authority = rest.split("/", 1)[0]
    return "" if "@" in authority else origin(scheme, authority)


def host_header(scope: Scope) -> str:
    """The request's Host header (as the edge left it), or ""."""
    for name, value in scope["headers"]:
        if name == b"host":
            return value.decode("latin-1")
    return ""


def request_origin(scope: Scope) -> str:
    """The origin the client addressed: the trusted scheme and Host; "" if the Host is invalid."""
    return origin(scope.get("scheme", "http"), host_header(scope))


class TrustedProxies:
    """The configured proxies, and what to believe of a request that one of them passed on."""

    def __init__(self, networks: Iterable[str]) -> None:
        self.networks = tuple(ipaddress.ip_network(n, strict=False) for n in networks)
        # Address text → (canonical address, trusted?), or None when it is not an address.
        # Peers are few (the proxies themselves), so the parse is done about once per address.
        self._known: dict[str, tuple[str, bool] | None] = {}

    def read(self, text: str) -> tuple[str, bool] | None:
        """The canonical address in `text` and whether it is a trusted proxy; None if no address."""
        try:
            return self._known[text]
        except KeyError:
            pass
        result = self._parse(text)
        if len(self._known) >= _CACHE_SIZE:
            self._known.clear()
        self._known[text] = result
        return result

    def _parse(self, text: str) -> tuple[str, bool] | None:
        candidate = text.strip()
        if candidate.startswith("["):  # [v6]:port
            candidate = candidate[1:].partition("]")[0]
        elif candidate.count(":") == 1:  # v4:port
            candidate = candidate.partition(":")[0]
        try:
            address = ipaddress.ip_address(candidate)
        except ValueError:
            return None
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return str(address), any(address in network for network in self.networks)

    def apply(self, scope: Scope) -> None:
        """Rewrite client, scheme and Host from X-Forwarded-* if the peer is a trusted proxy."""
        peer = scope.get("client")
        if not peer:
            return
        peer_read = self.read(peer[0])
        if peer_read is None or not peer_read[1]:
            return
        forwarded_for: list[bytes] = []
        proto = forwarded_host = b""
        for name, value in scope["headers"]:
            if name.startswith(b"x-forwarded-"):
                if name == b"x-forwarded-for":
                    forwarded_for.append(value)
                elif name == b"x-forwarded-proto":
                    proto = value
                elif name == b"x-forwarded-host":
                    forwarded_host = value
        if forwarded_for:
            client = self._client(b",".join(forwarded_for).decode("latin-1").split(","))
            if client is not None:
                scope["client"] = (client, 0)
        if proto:
            # The last value is the one the nearest proxy, which is trusted, wrote.
            scheme = _SCHEMES.get(proto.rpartition(b",")[2].strip().lower())
            if scheme is not None:
                scope["scheme"] = scheme
        if forwarded_host:
            host = forwarded_host.rpartition(b",")[2].strip()
            if split_authority(host.decode("latin-1")) is not None:
                scope["headers"] = [
                    *((n, v) for n, v in scope["headers"] if n != b"host"),
                    (b"host", host),
                ]

    def _client(self, hops: list[str]) -> str | None:
        """The rightmost address that is not a trusted proxy: each proxy appends its peer, so
        everything to the left of the first untrusted hop could have been written by the client."""
        client = None
        for hop in reversed(hops):
            hop_read = self.read(hop)
            if hop_read is None:
                break
            client = hop_read[0]
            if not hop_read[1]:
                break
        return client


def public_host(public_url: str) -> tuple[str, ...]:
    """The host of the public URL, if one is configured."""
    if not public_url:
        return ()
    parts = split_authority(public_url.partition("://")[2].split("/", 1)[0])
    return (parts[0],) if parts else ()


Refusal = tuple[int, list[tuple[bytes, bytes]], bytes]


def refusal(status: int, error: str, description: str) -> Refusal:
    """A refusal answered before routing, closing the connection."""
    headers = [
        (b"content-type", b"application/json"),
        (b"cache-control", b"no-store"),
        (b"connection", b"close"),
    ]
    return status, headers, problems.error_body(error, description)
