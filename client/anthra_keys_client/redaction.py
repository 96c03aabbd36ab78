"""A token is shown by its first 12 characters at most: the display prefix."""

from __future__ import annotations

import re

PREFIX_LENGTH = 12
# ant_live_ and whatever follows that could be part of a token, in any case.
_TOKEN_RUN = re.compile(r"ant_live_[A-Za-z0-9_\-]*", re.IGNORECASE)


def shown(token: str | None) -> str:
    """The token as it may be printed: its display prefix, marked as cut."""
    if not token:
        return ""
    return token[:PREFIX_LENGTH] + "…"


def redact(text: str) -> str:
    """Text with every token in it cut to its display prefix."""
    return _TOKEN_RUN.sub(lambda m: m.group(0)[:PREFIX_LENGTH] + "…", text)
