"""The six scopes a key can hold, with what each grants (the public documentation's words)."""

from __future__ import annotations

from collections.abc import Iterable

from domain.errors import InvalidInput

SCOPES: dict[str, str] = {
    "books:read": "List, read, and export your books and chapters.",
    "books:write": "Create, update, delete, and outline books and chapters.",
    "generation:run": (
        "Run the AI generation pipeline — outline, write, rewrite, narrate. "
        "Spends tokens and ElevenLabs credits."
    ),
    "publish:write": "Publish or unpublish books and change reader visibility.",
    "account:read": "Read account profile and token usage.",
    "analytics:read": "Read per-chapter reader analytics for your published books.",
}
ALL_SCOPES: frozenset[str] = frozenset(SCOPES)
_RANK = {scope: rank for rank, scope in enumerate(SCOPES)}


def in_order(scopes: Iterable[str]) -> tuple[str, ...]:
    """Scopes deduplicated, in the order of SCOPES (the one order every answer lists them in);
    any no longer known last, sorted."""
    return tuple(sorted(set(scopes), key=lambda s: (_RANK.get(s, len(_RANK)), s)))


def normalise(scopes: Iterable[str], field: str = "scopes") -> list[str]:
    """Known scopes, deduplicated, in the canonical order; at least one."""
    given = list(scopes)
    unknown = [s for s in given if s not in ALL_SCOPES]
    if unknown:
        raise InvalidInput(
            field, f"unknown scope {unknown[0]!r}; known scopes are {', '.join(SCOPES)}"
        )
    if not given:
        raise InvalidInput(field, "a key needs at least one scope")
    return list(in_order(given))
