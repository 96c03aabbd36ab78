"""The verification index: sha256(token) -> key record, in memory, tracking its store position."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from hashlib import sha256
from uuid import UUID

from eventsourcing.persistence import Tracking, TrackingRecorder

from domain.api_key import BLOCKED, ROTATED, SUSPENDED, Status, key_status
from domain.lifetime_policy import NO_POLICY, Terms
from domain.scopes import SCOPES
from domain.token import checked_bytes
from domain.verification import Code


class IndexStale(Exception):
    """The index cannot vouch that it has seen every recent revocation; refuse, never fail open."""


class KeyRecord:
    """What the ledger knows of one key now: enough to verify it and to list it."""

    __slots__ = (
        "answer",
        "blocked",
        "created_at",
        "digest",
        "expired_at",
        "expires_at",
        "expires_ts",
        "key_id",
        "lifetime",
        "name",
        "owner_id",
        "prefix",
        "retires_ts",
        "revoked_at",
        "scopes",
        "suspended",
        "version",
    )

    def __init__(
        self,
        key_id: UUID,
        owner_id: str,
        name: str,
        prefix: str,
        digest: bytes,
        scopes: frozenset[str],
        created_at: datetime,
        expires_at: datetime | None,
    ) -> None:
        self.key_id = key_id
        self.owner_id = owner_id
        self.name = name
        self.prefix = prefix
        self.digest = digest
        self.scopes = scopes
        self.created_at = created_at
        self.expires_at = expires_at
        self.expires_ts = expires_at.timestamp() if expires_at is not None else None
        # From minting to expiry, in seconds (None: never expires): what the lifetime policy
        # judges.
        self.lifetime = None if expires_at is None else (expires_at - created_at).total_seconds()
        self.revoked_at: datetime | None = None
        self.expired_at: datetime | None = None
        # When a rotated key stops (epoch seconds); it is refused from then on.
        self.retires_ts: float | None = None
        self.suspended = False
        # Whether the lifetime policy in force refuses the key (the index decides, per policy).
        self.blocked = False
        # The aggregate version last applied: an older event never overwrites a newer one.
        self.version = 1
        # The "valid" answer, made on first use: the checks above it still run every time.
        self.answer: Verification | None = None

    def status(self, now: float) -> Status:
        """The key's status at an instant in epoch seconds, the policy in force included (see
        key_status)."""
        return key_status(
            self.revoked_at is not None,
            self.expired_at is not None,
            self.expires_ts,
            now,
            retires=self.retires_ts,
            suspended=self.suspended,
            blocked=self.blocked,
        )

    def fields(self) -> tuple[object, ...]:
        """Every field but the cached answer, for comparing two indexes."""
        return tuple(getattr(self, name) for name in self.__slots__ if name != "answer")


@dataclass(frozen=True, slots=True)
class Verification:
    """The answer to 'may this token do this?'."""

    code: Code
    record: KeyRecord | None = None
    missing: tuple[str, ...] = ()
    # Why a key that exists is refused, in words for the 401's error_description: set only for
    # a suspended, blocked or rotated key (revoked, expired and unknown answer alike).
    description: str = ""

    @property
    def valid(self) -> bool:
        return self.code == "valid"


INVALID = Verification("invalid_token")
SUSPENDED_ANSWER = Verification("invalid_token", description="the key is suspended")
ROTATED_ANSWER = Verification("invalid_token", description="the key was rotated")
_CANONICAL = {scope: scope for scope in SCOPES}


class VerificationIndex(TrackingRecorder):
    """Keys by token digest, by id and by owner, with the store position it has applied up to."""

    def __init__(self, max_staleness: float = float("inf")) -> None:
        self._by_digest: dict[bytes, KeyRecord] = {}
        self._by_id: dict[UUID, KeyRecord] = {}
        self._by_owner: dict[str, list[KeyRecord]] = {}
        self._scope_sets: dict[frozenset[str], frozenset[str]] = {}
        self._write_lock = threading.Lock()
        # The lifetime policy in force, and the version of its aggregate it came from.
        self.terms: Terms = NO_POLICY
        self.policy_version = 0
        self._blocked_answer = Verification("invalid_token", description=NO_POLICY.reason())
        self._judged: dict[float | None, bool] = {}
        self.position = 0
        # Monotonic instant at which the index was last known to hold everything in the store.
        self.confirmed_at = time.monotonic()
        self.max_staleness = max_staleness

    # Reading: no I/O, no lock; a dict lookup and a few attribute reads.

    def verify(
        self, token: str, required: Iterable[str] = (), now: float | None = None
    ) -> Verification:
        """Format, checksum, digest, lookup, status, expiry, then scopes."""
        if time.monotonic() - self.confirmed_at > self.max_staleness:
            raise IndexStale
        raw = checked_bytes(token)
        if raw is None:
            return INVALID
        record = self._by_digest.get(sha256(raw).digest())
        if record is None or record.revoked_at is not None or record.expired_at is not None:
            return INVALID
        if now is None:
            now = time.time()
        expires_ts = record.expires_ts
        if expires_ts is not None and now >= expires_ts:
            return INVALID
        retires_ts = record.retires_ts
        if retires_ts is not None and now >= retires_ts:
            return ROTATED_ANSWER
        if record.suspended:
            return SUSPENDED_ANSWER
        if record.blocked:
            return self._blocked_answer
        scopes = record.scopes
        for scope in required:
            if scope not in scopes:
                missing = tuple(s for s in required if s not in scopes)
                return Verification("insufficient_scope", record, missing)
        answer = record.answer
        if answer is None:
            answer = record.answer = Verification("valid", record)
        return answer

    def shared_scopes(self, scopes: Iterable[str]) -> frozenset[str]:
        """One frozenset object per distinct scope set, of canonical strings: keys share them."""
        key = frozenset(scopes)
        shared = self._scope_sets.get(key)
        if shared is None:
            shared = frozenset(_CANONICAL.get(s, s) for s in key)
            self._scope_sets[shared] = shared
        return shared

    def holder(self, token: str) -> KeyRecord | None:
        """The key a well-formed token belongs to, whatever its status (for questions about
        the past)."""
        raw = checked_bytes(token)
        return None if raw is None else self._by_digest.get(sha256(raw).digest())

    def key(self, key_id: UUID) -> KeyRecord | None:
        return self._by_id.get(key_id)

    def keys_of(self, owner_id: str) -> list[KeyRecord]:
        return list(self._by_owner.get(owner_id, ()))

    def records(self) -> Iterator[KeyRecord]:
        return iter(list(self._by_id.values()))

    def __len__(self) -> int:
        return len(self._by_id)

    def fields(self) -> dict[UUID, tuple[object, ...]]:
        """Every record's fields, for comparing a rebuilt index with a live one."""
        return {key_id: record.fields() for key_id, record in self._by_id.items()}

    def lag(self) -> float:
        """Seconds since the index was last known to hold everything in the store."""
        return max(0.0, time.monotonic() - self.confirmed_at)

    def is_fresh(self) -> bool:
        """Whether the index may vouch for a token now (verify checks the same, inline)."""
        return self.lag() <= self.max_staleness

    def confirm(self, at: float) -> None:
        """Note that at monotonic instant `at` the store held nothing this index had not applied."""
        if at > self.confirmed_at:
            self.confirmed_at = at

    def refusal(self, status: Status) -> Verification:
        """What verify answers for a key in this status that is not active."""
        if status == SUSPENDED:
            return SUSPENDED_ANSWER
        if status == BLOCKED:
            return self._blocked_answer
        if status == ROTATED:
            return ROTATED_ANSWER
        return INVALID

    # Writing: only the projection calls these, one event at a time, in store order.

    def add(self, record: KeyRecord) -> None:
        with self._write_lock:
            record.blocked = self._blocks(record.lifetime)
            self._by_digest[record.digest] = record
            self._by_id[record.key_id] = record
            self._by_owner.setdefault(record.owner_id, []).append(record)

    def set_terms(self, terms: Terms, version: int) -> None:
        """Put the lifetime policy's terms at this version of its aggregate in force: every key
        they no longer allow is blocked, every key they allow again unblocked. An older version
        than the one in force changes nothing."""
        with self._write_lock:
            if version <= self.policy_version:
                return
            self.policy_version = version
            if terms == self.terms:
                return
            self.terms = terms
            self._judged.clear()
            self._blocked_answer = Verification("invalid_token", description=terms.reason())
            for record in self._by_id.values():
                record.blocked = self._blocks(record.lifetime)

    def _blocks(self, lifetime: float | None) -> bool:
        """Whether the terms in force block a key of this lifetime in seconds (None: it never
        expires); keys share a handful of lifetimes, so each is judged once."""
        blocked = self._judged.get(lifetime)
        if blocked is None:
            span = None if lifetime is None else timedelta(seconds=lifetime)
            blocked = self._judged[lifetime] = self.terms.blocks(span)
        return blocked

    # TrackingRecorder: the index's position in the application sequence.

    def insert_tracking(self, tracking: Tracking) -> None:
        with self._write_lock:
            if tracking.notification_id > self.position:
                self.position = tracking.notification_id

    def max_tracking_id(self, application_name: str) -> int | None:
        return self.position or None
