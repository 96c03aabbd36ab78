"""The personal access token format: ant_live_ + 44 characters of entropy + 6 of checksum."""

from __future__ import annotations

import base64
import binascii
import hashlib
import html
import re
import secrets
import unicodedata
import zlib
from collections.abc import Iterator
from urllib.parse import unquote

PREFIX = "ant_live_"
ENTROPY_BYTES = 33
ENTROPY_CHARS = 44  # 33 bytes in base64url, no padding needed
CHECKSUM_CHARS = 6  # CRC32 as 4 big-endian bytes, base64url without padding
TOKEN_LENGTH = len(PREFIX) + ENTROPY_CHARS + CHECKSUM_CHARS  # 59
DISPLAY_PREFIX_LENGTH = 12

_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_TO_URLSAFE = bytes.maketrans(b"+/", b"-_")
_CHECKED_LENGTH = len(PREFIX) + ENTROPY_CHARS


def checksum(head: str) -> str:
    """The 6-character checksum of everything before it."""
    crc = zlib.crc32(head.encode("ascii")).to_bytes(4, "big")
    return base64.urlsafe_b64encode(crc).decode("ascii").rstrip("=")


def generate() -> str:
    """A new random token; it is shown once and never stored."""
    entropy = base64.urlsafe_b64encode(secrets.token_bytes(ENTROPY_BYTES)).decode("ascii")
    head = PREFIX + entropy
    return head + checksum(head)


def checked_bytes(token: str) -> bytes | None:
    """The token's bytes if length, prefix, alphabet and checksum are right, else None.

    On the verification hot path: the bytes it returns are hashed as they are, so the token is
    encoded once. The prefix's letters are all in the alphabet, so one translate checks it all.
    """
    if len(token) != TOKEN_LENGTH or not token.startswith(PREFIX) or not token.isascii():
        return None
    raw = token.encode("ascii")
    if raw.translate(None, _ALPHABET):
        return None
    crc = zlib.crc32(raw[:_CHECKED_LENGTH]).to_bytes(4, "big")
    if (
        binascii.b2a_base64(crc, newline=False)[:CHECKSUM_CHARS].translate(_TO_URLSAFE)
        != (raw[_CHECKED_LENGTH:])
    ):
        return None
    return raw


def is_well_formed(token: str) -> bool:
    """Length, prefix, alphabet and checksum are right: no lookup needed to reject the rest."""
    return checked_bytes(token) is not None


def digest(token: str) -> bytes:
    """sha256 of the token: the only form the ledger keeps."""
    return hashlib.sha256(token.encode("ascii")).digest()


def display_prefix(token: str) -> str:
    """The first 12 characters: all of a token that may ever be shown, logged or stored."""
    return token[:DISPLAY_PREFIX_LENGTH]


# What a secret scanner looks for: the prefix and 50 characters of the alphabet, not glued to
# more of it. The checksum, checked after a match (find_tokens), keeps false positives near zero.
TOKEN_PATTERN = "(?<![A-Za-z0-9_-])" + re.escape(PREFIX) + "[A-Za-z0-9_-]{50}(?![A-Za-z0-9_-])"
_TOKEN = re.compile(TOKEN_PATTERN)


def find_tokens(text: str) -> Iterator[tuple[int, str]]:
    """(offset, token) of every live-format token in text whose checksum is right."""
    for match in _TOKEN.finditer(text):
        if is_well_formed(match[0]):
            yield match.start(), match[0]


# More of a token than its display prefix: the prefix in any case, then a fourth character of it.
_BEYOND_PREFIX = re.compile(
    re.escape(PREFIX) + f"[A-Za-z0-9_-]{{{DISPLAY_PREFIX_LENGTH - len(PREFIX) + 1}}}",
    re.IGNORECASE,
)
_ENTROPY_AND_CHECKSUM = re.compile(f"[A-Za-z0-9_-]{{{ENTROPY_CHARS + CHECKSUM_CHARS},}}")
_BASE64_RUN = re.compile(r"[A-Za-z0-9+/_-]{16,}={0,2}")
_BACKSLASH_ESCAPE = re.compile(r"\\u([0-9A-Fa-f]{4})|\\x([0-9A-Fa-f]{2})")
_MAX_DECODE_ROUNDS = 4


def holds_token(text: str) -> bool:
    """Whether text holds more of a token than its display prefix, however it was pasted.

    A person pastes a token as it came: from a URL (percent-encoded, perhaps twice), from HTML or
    JSON source, through a full-width input method, from a Kubernetes secret (base64), in any
    case, or without its `ant_live_` prefix.
    """
    for reading in _readings(text):
        if _BEYOND_PREFIX.search(reading) or _bare_token(reading):
            return True
    return False


def _readings(text: str) -> Iterator[str]:
    """The text, then each decoding of it a person's paste may have gone through."""
    current = text
    for _ in range(_MAX_DECODE_ROUNDS):
        yield current
        yield from _base64_readings(current)
        decoded = unicodedata.normalize("NFKC", html.unescape(unquote(_unescape(current))))
        if decoded == current:
            return
        current = decoded
    yield current


def _unescape(text: str) -> str:
    return _BACKSLASH_ESCAPE.sub(lambda m: chr(int(m[1] or m[2], 16)), text)


def _base64_readings(text: str) -> Iterator[str]:
    for run in _BASE64_RUN.findall(text):
        # A run may start mid-quantum when it is glued to other text: try every alignment.
        for start in range(4):
            body = run[start:].rstrip("=").replace("+", "-").replace("/", "_")
            if len(body) % 4 == 1:
                body = body[:-1]  # a lone trailing character cannot be decoded; the rest can
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
            yield raw.decode("latin-1")


def _bare_token(text: str) -> bool:
    """A token's 50 characters after its prefix, checksum and all, with the prefix cut off."""
    width = ENTROPY_CHARS + CHECKSUM_CHARS
    for run in _ENTROPY_AND_CHECKSUM.findall(text):
        for start in range(len(run) - width + 1):
            if is_well_formed(PREFIX + run[start : start + width]):
                return True
    return False
