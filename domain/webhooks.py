"""Webhook rules that are pure computation: which URLs may receive, how a delivery is signed
(Standard Webhooks), and when a failed delivery is tried again."""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
from typing import Final
from urllib.parse import urlsplit

from domain.api_key import check_text
from domain.errors import InvalidInput

SECRET_PREFIX: Final = "whsec_"  # noqa: S105 (a prefix, not a secret)
SECRET_BYTES: Final = 32
MAX_URL_LENGTH: Final = 2048
# The first retry after this many seconds, doubling up to the cap, each with up to this much
# jitter either way (so that many endpoints failing together do not retry together).
FIRST_DELAY: Final = 5.0
MAX_DELAY: Final = 3600.0
JITTER: Final = 0.2
DEFAULT_RETRY_WINDOW: Final = 24 * 3600.0


def check_url(url: object, *, allow_http_loopback: bool = False) -> str:
    """The URL, if an endpoint may receive at it; else InvalidInput naming `url`.

    https only (http only to a loopback address, when the operator allows it); no credentials,
    fragment or odd authority; a literal address must be public unless it is that loopback; and,
    as every text the ledger keeps, no token.
    Names are resolved, and their addresses checked, at each delivery (domain has no I/O).
    """
    if not isinstance(url, str) or not url:
        raise InvalidInput("url", "an https:// URL")
    if len(url) > MAX_URL_LENGTH or not (url.isascii() and url.isprintable()) or " " in url:
        raise InvalidInput("url", f"a printable ASCII URL of at most {MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").rstrip(".")
    except ValueError:  # an unbalanced "[" in the authority, say
        raise InvalidInput("url", "a well-formed https:// URL") from None
    if parts.scheme not in ("https", "http"):
        raise InvalidInput("url", "an https:// URL")
    if "@" in parts.netloc or parts.username is not None or parts.password is not None:
        raise InvalidInput("url", "a URL without credentials (the secret signs each delivery)")
    if parts.fragment or "#" in url:
        raise InvalidInput("url", "a URL without a fragment")
    try:
        port = parts.port
    except ValueError:
        raise InvalidInput("url", "a port from 1 to 65535") from None
    if port == 0:
        raise InvalidInput("url", "a port from 1 to 65535")
    if not host or any(c in host for c in "%\\"):
        raise InvalidInput("url", "a URL with a host name")
    address = ip_address(host)
    loopback = host == "localhost" or (address is not None and address.is_loopback)
    if parts.scheme == "http" and not (allow_http_loopback and loopback):
        raise InvalidInput("url", "an https:// URL (http is allowed to loopback only in tests)")
    if loopback and not allow_http_loopback:
        raise InvalidInput("url", "a public address, not this machine")
    if address is not None and not loopback and not is_public(address):
        raise InvalidInput("url", "a public address, not a private, link-local or reserved one")
    # Kept in the endpoint's events for good and shown on every read, like a key's name.
    check_text("url", url)
    return url


def ip_address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address a host literally is, or None for a name."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether an address is on the public internet (not private, loopback, link-local, ...)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return is_public(address.ipv4_mapped)
    return address.is_global and not address.is_multicast


def message_id(position: int) -> str:
    """The `webhook-id` of the event at a store position: the same on every attempt, so a
    receiver can drop a delivery it has had."""
    return f"evt_{position}"


def notice_id(key_id: str, days: int) -> str:
    """The `webhook-id` of a key's ExpiringSoon notice `days` before its expiry."""
    return f"exp_{key_id}_{days}d"


def secret_bytes(secret: str) -> bytes:
    """The signing key a `whsec_` secret stands for."""
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header: v1 and the HMAC-SHA256 of "id.timestamp.body"."""
    signed = b"%s.%d.%s" % (msg_id.encode(), timestamp, body)
    digest = hmac.new(secret_bytes(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def retry_delay(attempts: int, jitter: float, first: float = FIRST_DELAY) -> float:
    """Seconds before the next try after `attempts` failed ones: `first`, doubling up to
    MAX_DELAY; `jitter` in [-1, 1] (drawn by the caller) moves it up to JITTER of itself."""
    base: float = min(MAX_DELAY, first * 2.0 ** min(max(0, attempts - 1), 32))
    return base * (1 + JITTER * max(-1.0, min(1.0, jitter)))
