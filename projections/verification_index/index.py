"""The verification index: sha256(token) -> what verifying the key needs, in memory, tracking its
store position."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from hashlib import sha256
from operator import or_
from time import monotonic
from typing import Any, ClassVar, Final
from uuid import UUID

import msgspec
from eventsourcing.persistence import Tracking, TrackingRecorder

from domain.api_key import ACTIVE, BLOCKED, ROTATED, SUSPENDED, Status, key_status
from domain.lifetime_policy import NO_POLICY, Terms
from domain.scopes import SCOPES
from domain.verification import Code


class IndexStale(Exception):
    """The index cannot vouch that it has seen every recent revocation; refuse, never fail open."""


# What a key's flags say, besides its expiry; a key with no flag set is refused only by time.
REVOKED_FLAG: Final = 1
EXPIRED_FLAG: Final = 2
SUSPENDED_FLAG: Final = 4
BLOCKED_FLAG: Final = 8
# Rotated: refused from its retiring instant on (kept beside the record, as few keys have one).
ROTATED_FLAG: Final = 16


class KeyRecord(msgspec.Struct, gc=False, eq=False):
    """What verifying a key needs, and no more: its id (the UUID as an int), its owner, its
    scopes, its expiry and lifetime in seconds, and what refuses it besides time, as flags.

    Every process holds a million of these: each field is an int, a float, None or an object
    shared with other records (owner ids, scope sets and lifetimes are interned), and the
    collector never tracks them (they refer to nothing that could refer back). Everything
    else about a key (name, prefix, instants) is in the key states read model.

    A live key's record is itself the "valid" answer to a verification (see `Verification`):
    no answer object to make, or to reach through another pointer, on the hot path.
    """

    id_int: int
    owner_id: str
    scopes: frozenset[str]
    # The expiry instant in epoch seconds; None: it never expires.
    expires_ts: float | None
    # From minting to expiry in seconds (None: never expires): what the lifetime policy judges.
    lifetime: float | None
    flags: int = 0
    # The aggregate version last applied: an older event never overwrites a newer one.
    version: int = 1

    # As an answer: valid, nothing missing, nothing to explain.
    code: ClassVar[Code] = "valid"
    valid: ClassVar[bool] = True
    missing: ClassVar[tuple[str, ...]] = ()
    description: ClassVar[str] = ""

    @property
    def record(self) -> KeyRecord:
        return self

    @property
    def key_id(self) -> UUID:
        return UUID(int=self.id_int)

    @property
    def expires_at(self) -> datetime | None:
        return None if self.expires_ts is None else datetime.fromtimestamp(self.expires_ts, UTC)

    @property
    def revoked(self) -> bool:
        return bool(self.flags & REVOKED_FLAG)

    @property
    def suspended(self) -> bool:
        return bool(self.flags & SUSPENDED_FLAG)

    @property
    def blocked(self) -> bool:
        return bool(self.flags & BLOCKED_FLAG)

    def fields(self) -> tuple[object, ...]:
        """Every field, for comparing two indexes."""
        return msgspec.structs.astuple(self)


@dataclass(frozen=True, slots=True)
class Refusal:
    """An answer other than "valid": the code, and for a key that exists but is refused or
    lacks a scope, why."""

    code: Code
    record: KeyRecord | None = None
    missing: tuple[str, ...] = ()
    # Why a key that exists is refused, in words for the 401's error_description: set only for
    # a suspended, blocked or rotated key (revoked, expired and unknown answer alike).
    description: str = ""

    @property
    def valid(self) -> bool:
        return False


# The answer to "may this token do this?": the key's record when it may, else a Refusal. Both
# have `code`, `valid`, `record`, `missing` and `description`.
Verification = KeyRecord | Refusal
INVALID = Refusal("invalid_token")
SUSPENDED_ANSWER = Refusal("invalid_token", description="the key is suspended")
ROTATED_ANSWER = Refusal("invalid_token", description="the key was rotated")
_CANONICAL = {scope: scope for scope in SCOPES}


class VerificationIndex(TrackingRecorder):
    """Keys by token digest and by id, with the lifetime policy in force and the store position
    it has applied up to."""

    def __init__(self, max_staleness: float = float("inf")) -> None:
        self._by_digest: dict[bytes, KeyRecord] = {}
        self._by_id: dict[int, KeyRecord] = {}
        # When each rotated key stops (epoch seconds), by id.
        self._retires: dict[int, float] = {}
        # One object per distinct owner id, scope set and lifetime, shared by the records.
        self._owners: dict[str, str] = {}
        self._scope_sets: dict[frozenset[str], frozenset[str]] = {}
        self._lifetimes: dict[float, float] = {}
        self._write_lock = threading.Lock()
        # The lifetime policy in force, and the version of its aggregate it came from.
        self.terms: Terms = NO_POLICY
        self.policy_version = 0
        self._blocked_answer = Refusal("invalid_token", description=NO_POLICY.reason())
        self._judged: dict[float | None, bool] = {}
        self.position = 0
        self._get = self._by_digest.get
        # Monotonic instant at which the index was last known to hold everything in the store,
        # how long after it the index may still vouch for a token, and so until when it may.
        self._confirmed_at = time.monotonic()
        self._max_staleness = max_staleness
        self._vouches_until = self._confirmed_at + max_staleness

    @property
    def confirmed_at(self) -> float:
        return self._confirmed_at

    @confirmed_at.setter
    def confirmed_at(self, at: float) -> None:
        self._confirmed_at = at
        self._vouches_until = at + self._max_staleness

    @property
    def max_staleness(self) -> float:
        return self._max_staleness

    @max_staleness.setter
    def max_staleness(self, seconds: float) -> None:
        self._max_staleness = seconds
        self._vouches_until = self._confirmed_at + seconds

    # Reading: no I/O, no lock; a dict lookup and a few attribute reads.

    def verify(
        self, token: str, required: Iterable[str] = (), now: float | None = None
    ) -> Verification:
        """Digest, lookup, flags, expiry, then scopes. A token is not checked for its form:
        one that no key has, well-formed or not, is refused alike."""
        if monotonic() > self._vouches_until:
            raise IndexStale
        try:
            record = self._get(sha256(token.encode()).digest())
        except UnicodeEncodeError:
            return INVALID
        if record is None:
            return INVALID
        if now is None:
            now = time.time()
        if record.flags:
            refusal = self._refusal(record, now)
            if refusal is not None:
                return refusal
        expires_ts = record.expires_ts
        if expires_ts is not None and now >= expires_ts:
            return INVALID
        scopes = record.scopes
        for scope in required:
            if scope not in scopes:
                missing = tuple(s for s in required if s not in scopes)
                return Refusal("insufficient_scope", record, missing)
        return record

    def _refusal(self, record: KeyRecord, now: float) -> Refusal | None:
        """The answer for a key with a flag set, if it is refused at `now`."""
        status = self.status(record, now)
        return None if status == ACTIVE else self.refusal(status)

    def status(self, record: KeyRecord, now: float) -> Status:
        """The key's status at an instant in epoch seconds, the policy in force included (see
        key_status)."""
        flags = record.flags
        return key_status(
            bool(flags & REVOKED_FLAG),
            bool(flags & EXPIRED_FLAG),
            record.expires_ts,
            now,
            retires=self._retires.get(record.id_int) if flags & ROTATED_FLAG else None,
            suspended=bool(flags & SUSPENDED_FLAG),
            blocked=bool(flags & BLOCKED_FLAG),
        )

    def refusal(self, status: Status) -> Refusal:
        """What verify answers for a key in this status that is not active."""
        if status == SUSPENDED:
            return SUSPENDED_ANSWER
        if status == BLOCKED:
            return self._blocked_answer
        if status == ROTATED:
            return ROTATED_ANSWER
        return INVALID

    def retires_ts(self, record: KeyRecord) -> float | None:
        """When a rotated key stops, in epoch seconds; None for a key never rotated."""
        return self._retires.get(record.id_int)

    def blocks(self, lifetime: float | None) -> bool:
        """Whether the terms in force block a key of this lifetime in seconds (None: it never
        expires); keys share a handful of lifetimes, so each is judged once per policy."""
        blocked = self._judged.get(lifetime)
        if blocked is None:
            span = None if lifetime is None else timedelta(seconds=lifetime)
            blocked = self._judged[lifetime] = self.terms.blocks(span)
        return blocked

    def shared_scopes(self, scopes: Iterable[str]) -> frozenset[str]:
        """One frozenset object per distinct scope set, of canonical strings: keys share them."""
        key = frozenset(scopes)
        shared = self._scope_sets.get(key)
        if shared is None:
            shared = frozenset(_CANONICAL.get(s, s) for s in key)
            self._scope_sets[shared] = shared
        return shared

    def shared_lifetime(self, lifetime: float | None) -> float | None:
        """One float object per distinct lifetime (most keys live a whole number of days)."""
        return None if lifetime is None else self._lifetimes.setdefault(lifetime, lifetime)

    def holder(self, token: str) -> KeyRecord | None:
        """The key a token belongs to, whatever its status (for questions about the past)."""
        try:
            return self._by_digest.get(sha256(token.encode()).digest())
        except UnicodeEncodeError:
            return None

    def key(self, key_id: UUID) -> KeyRecord | None:
        return self._by_id.get(key_id.int)

    def records(self) -> Iterator[KeyRecord]:
        return iter(list(self._by_id.values()))

    def __len__(self) -> int:
        return len(self._by_id)

    def fields(self) -> dict[UUID, tuple[object, ...]]:
        """Every record's fields (a rotated key's retiring instant too), for comparing a rebuilt
        index with a live one."""
        return {
            UUID(int=id_int): (*record.fields(), self._retires.get(id_int))
            for id_int, record in self._by_id.items()
        }

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

    # Writing: only the projection and a load of the key states call these, in store order.

    def add(self, digest: bytes, record: KeyRecord, retires_ts: float | None = None) -> None:
        """Add a key (its owner id, scopes and lifetime shared with other records), blocked if
        the policy in force does not allow its lifetime."""
        with self._write_lock:
            record.owner_id = self._owners.setdefault(record.owner_id, record.owner_id)
            record.lifetime = self.shared_lifetime(record.lifetime)
            if self.blocks(record.lifetime):
                record.flags |= BLOCKED_FLAG
            else:
                record.flags &= ~BLOCKED_FLAG
            if retires_ts is not None:
                self._retires[record.id_int] = retires_ts
                record.flags |= ROTATED_FLAG
            self._by_digest[digest] = record
            self._by_id[record.id_int] = record

    def load(self, pages: Iterable[Sequence[Sequence[Any]]], id_int: Callable[[Any], int]) -> None:
        """Add keys in bulk, as `add` does one, a page of rows at a time: rows of (key id, read
        by `id_int`; owner id; digest; scopes as space-separated text; expiry and lifetime in
        seconds; flags; when a rotated key stops; version).

        Column by column, with `map` and `zip`: no Python code runs per row (a loop over the
        rows took twice as long), and nothing is made per row but the record."""
        with self._write_lock:
            by_digest, by_id = self._by_digest, self._by_id
            owner_of, lifetime_of = self._owners.setdefault, self._lifetimes.setdefault
            scope_sets: dict[str, frozenset[str]] = {}
            blocked_flag: dict[float | None, int] = {}
            for page in pages:
                if not page:
                    continue
                kids, owners, digests, texts, expiries, lifetimes, flags, retiring, versions = zip(
                    *page, strict=True
                )
                for text in set(texts).difference(scope_sets):
                    scope_sets[text] = self.shared_scopes(text.split())
                shared_lifetimes = list(map(lifetime_of, lifetimes, lifetimes))
                for lifetime in set(shared_lifetimes).difference(blocked_flag):
                    blocked_flag[lifetime] = BLOCKED_FLAG if self.blocks(lifetime) else 0
                ids = list(map(id_int, kids))
                records = list(
                    map(
                        KeyRecord,
                        ids,
                        map(owner_of, owners, owners),
                        map(scope_sets.__getitem__, texts),
                        expiries,
                        shared_lifetimes,
                        map(or_, flags, map(blocked_flag.__getitem__, shared_lifetimes)),
                        versions,
                    )
                )
                by_digest.update(zip(digests, records, strict=True))
                by_id.update(zip(ids, records, strict=True))
                if any(r is not None for r in retiring):
                    for record, retires_ts in zip(records, retiring, strict=True):
                        if retires_ts is not None:
                            self._retires[record.id_int] = retires_ts
                            record.flags |= ROTATED_FLAG

    def rotated(self, record: KeyRecord, retires_ts: float) -> None:
        """The key stops at `retires_ts`."""
        with self._write_lock:
            self._retires[record.id_int] = retires_ts
            record.flags |= ROTATED_FLAG

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
            self._blocked_answer = Refusal("invalid_token", description=terms.reason())
            blocks = self.blocks
            for record in self._by_id.values():
                if blocks(record.lifetime):
                    record.flags |= BLOCKED_FLAG
                else:
                    record.flags &= ~BLOCKED_FLAG

    # TrackingRecorder: the index's position in the application sequence.

    def insert_tracking(self, tracking: Tracking) -> None:
        with self._write_lock:
            if tracking.notification_id > self.position:
                self.position = tracking.notification_id

    def max_tracking_id(self, application_name: str) -> int | None:
        return self.position or None
