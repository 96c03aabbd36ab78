"""Idempotency keys: a request a client retries under the same `Idempotency-Key` is not done twice.

A client that timed out cannot know whether its request was carried out, so it sends it again
with the same key. For 24 hours from the first attempt the ledger recognises the key (per
owner): the same request again is a retry, another request under the same key is refused. A
retried mint cannot answer with the first attempt's token — tokens are never stored — so it
supersedes that key (revoked, reason `superseded`) and mints a new one: a retry never leaves
two live keys.

The record is an aggregate in the ledger's own store, whose id is derived from the owner and
the key, so two attempts racing each other conflict on its version like any other command, and
its events are saved in the same transaction as the key's.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta
from typing import Final
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event

from domain.errors import InvalidInput, LedgerError

HEADER: Final = "Idempotency-Key"
WINDOW: Final = timedelta(hours=24)
MAX_LENGTH: Final = 255
SUPERSEDED: Final = "superseded"
_NAMESPACE: Final = UUID("6f0d3b55-6b8e-4f43-9a55-3c1f0a4d2b71")


class IdempotencyKeyReused(LedgerError):
    """The key was used in the last 24 hours for a different request."""

    def __init__(self) -> None:
        super().__init__(
            f"this {HEADER} was used for a different request in the last 24 hours; "
            "use a new key for a new request"
        )


def check_key(key: str) -> str:
    """An idempotency key is 1-255 visible ASCII characters."""
    if not 1 <= len(key) <= MAX_LENGTH or not key.isascii() or not key.isprintable():
        raise InvalidInput(HEADER, f"1 to {MAX_LENGTH} visible ASCII characters")
    if " " in key:
        raise InvalidInput(HEADER, "no spaces")
    return key


def record_id(owner_id: str, key: str) -> UUID:
    """The record of one owner's idempotency key; the key itself is never stored."""
    return uuid5(_NAMESPACE, f"{owner_id}\n{key}")


def fingerprint(operation: str, *arguments: object) -> str:
    """What a request asked for, so that a retry can be told from a different request."""
    text = json.dumps([operation, *arguments], sort_keys=True, default=str, ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


class IdempotentRequest(Aggregate):
    """One owner's use of one idempotency key: what the request was, and the key it made."""

    class Started(Aggregate.Created):
        """The first attempt of a request under this idempotency key."""

        owner_id: str
        fingerprint: str
        key_id: UUID
        at: datetime

    class Restarted(Aggregate.Event):
        """The key used again after its window: a new request."""

        fingerprint: str
        key_id: UUID
        at: datetime

    class Retried(Aggregate.Event):
        """A retry; for a mint, the key it made in place of the one it superseded."""

        key_id: UUID
        at: datetime

    @event(Started)
    def __init__(self, owner_id: str, fingerprint: str, key_id: UUID, at: datetime) -> None:
        self.owner_id = owner_id
        self.fingerprint = fingerprint
        self.key_id = key_id
        self.started_at = at

    @classmethod
    def start(
        cls, *, owner_id: str, key: str, fingerprint: str, key_id: UUID, at: datetime
    ) -> IdempotentRequest:
        return cls._create(
            cls.Started,
            id=record_id(owner_id, key),
            owner_id=owner_id,
            fingerprint=fingerprint,
            key_id=key_id,
            at=at,
        )

    def is_retry(self, fingerprint: str, at: datetime) -> bool:
        """True for the same request within the window, False once the window has passed;
        another request within the window is refused."""
        if at - self.started_at >= WINDOW:
            return False
        if fingerprint != self.fingerprint:
            raise IdempotencyKeyReused
        return True

    @event(Restarted)
    def restart(self, fingerprint: str, key_id: UUID, at: datetime) -> None:
        self.fingerprint = fingerprint
        self.key_id = key_id
        self.started_at = at

    @event(Retried)
    def retried(self, key_id: UUID, at: datetime) -> None:
        self.key_id = key_id
