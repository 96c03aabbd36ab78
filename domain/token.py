"""The personal access token format: ant_live_ + 44 characters of entropy + 6 of checksum."""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
import zlib

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
