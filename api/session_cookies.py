"""Auth.js's session cookie in a Cookie header: its names, its chunks (`.0`, `.1`, …), and the
header parsed as @auth/core 0.41.3 parses it."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final
from urllib.parse import unquote_to_bytes

SESSION_COOKIE_NAMES = ("__Secure-authjs.session-token", "authjs.session-token")
_CHUNK_INDEX: Final = re.compile(r"0|[1-9][0-9]{0,5}")
_BAD_PERCENT: Final = re.compile(r"%(?![0-9A-Fa-f]{2})")


def find_session_cookie(cookies: Mapping[str, str]) -> tuple[str, str] | None:
    """(cookie name without chunk suffix, joined value) or None when there is no session cookie."""
    for name in SESSION_COOKIE_NAMES:
        value = _assemble(cookies, name)
        if value is not None:
            return name, value
    return None


def parse_cookie_header(header: str) -> dict[str, str]:
    """Cookie header to a dict, tolerant of junk (no exception on malformed input)."""
    cookies: dict[str, str] = {}
    if not isinstance(header, str):
        return cookies
    # Same rules as the cookie parser vendored in @auth/core: first occurrence wins,
    # surrounding quotes go, percent-escapes are decoded only when they are well formed.
    for pair in header.split(";"):
        name, sep, value = pair.partition("=")
        if not sep:
            continue
        name = name.strip(" \t")
        if not name or name in cookies:
            continue
        value = value.strip(" \t")
        if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
            value = value[1:-1]
        cookies[name] = _percent_decode(value)
    return cookies


def _assemble(cookies: Mapping[str, str], name: str) -> str | None:
    """The plain cookie, else the joined gapless run name.0, name.1, ...; None otherwise."""
    # Empty values are cookies being cleared (Auth.js skips them too).
    plain = cookies.get(name)
    if isinstance(plain, str) and plain:
        return plain
    prefix = name + "."
    pieces: dict[int, str] = {}
    for key, value in cookies.items():
        if not (isinstance(key, str) and key.startswith(prefix)):
            continue
        if not (isinstance(value, str) and value):
            continue
        index = key[len(prefix) :]
        if _CHUNK_INDEX.fullmatch(index):
            pieces[int(index)] = value
    # Distinct non-negative indices form 0..n-1 exactly when their count is max + 1. A gap
    # means a lost or stale piece; joining around it could only produce a broken token.
    if not pieces or len(pieces) != max(pieces) + 1:
        return None
    return "".join(pieces[i] for i in range(len(pieces)))


def _percent_decode(value: str) -> str:
    """decodeURIComponent, keeping the raw value when it would throw."""
    if "%" not in value or _BAD_PERCENT.search(value):
        return value
    try:
        return unquote_to_bytes(value).decode("utf-8")
    except UnicodeDecodeError:
        return value
