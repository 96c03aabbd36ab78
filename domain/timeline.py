"""Answers about a key's past, computed from its events alone: no store, no clock."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from eventsourcing.domain import DomainEventProtocol

from domain.api_key import ApiKey, Status, key_status
from domain.lifetime_policy import NO_POLICY, LifetimePolicy, Terms, terms_of
from domain.scopes import in_order
from domain.verification import Code

Events = Sequence[DomainEventProtocol[Any]]
Interval = tuple[datetime, datetime]
Later = (
    ApiKey.ScopesSet
    | ApiKey.Revoked
    | ApiKey.Expired
    | ApiKey.Rotated
    | ApiKey.Suspended
    | ApiKey.Resumed
)
PolicyEvents = Sequence[LifetimePolicy.Set | LifetimePolicy.Changed]


@dataclass(frozen=True, slots=True)
class KeyAsOf:
    """A key as it stood at one instant of its history."""

    key_id: UUID
    owner_id: str
    name: str
    prefix: str
    status: Status
    scopes: tuple[str, ...]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    as_of: datetime


def scope_change(
    previous: Sequence[str], new: Sequence[str]
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The scopes a change added and the scopes it removed, each in canonical order."""
    before, after = set(previous), set(new)
    return in_order(after - before), in_order(before - after)


def widened(previous: Sequence[str], new: Sequence[str]) -> bool:
    """Whether a change granted any scope the key did not hold before."""
    return bool(scope_change(previous, new)[0])


def terms_at(policy: PolicyEvents, instant: datetime) -> Terms:
    """The lifetime policy in force at an instant: the last set at or before it."""
    terms = NO_POLICY
    for e in policy:
        if e.at <= instant:
            terms = terms_of(e)
    return terms


def key_as_of(events: Events, instant: datetime, policy: PolicyEvents = ()) -> KeyAsOf | None:
    """The key as it was at instant, from the events with at <= instant and the lifetime policy
    in force then; None before minting."""
    instant = _utc(instant, "instant")
    checked = _checked(events)
    if checked is None or checked[0].at > instant:
        return None
    minted, later = checked
    scopes: Sequence[str] = minted.scopes
    revoked_at: datetime | None = None
    retires_at: datetime | None = None
    expired = suspended = False
    # Events are taken in the order they were recorded, not sorted by at: if the clock ever
    # stepped back, the later record is still the later decision.
    for e in later:
        if e.at > instant:
            continue
        if isinstance(e, ApiKey.ScopesSet):
            scopes = e.scopes
        elif isinstance(e, ApiKey.Revoked):
            revoked_at = e.at if revoked_at is None else min(revoked_at, e.at)
        elif isinstance(e, ApiKey.Expired):
            expired = True
        elif isinstance(e, ApiKey.Rotated):
            retires_at = e.retires_at
        elif isinstance(e, ApiKey.Suspended | ApiKey.Resumed):
            suspended = isinstance(e, ApiKey.Suspended)
    lifetime = None if minted.expires_at is None else minted.expires_at - minted.at
    status = key_status(
        revoked_at is not None,
        expired,
        minted.expires_at,
        instant,
        retires=retires_at,
        suspended=suspended,
        blocked=terms_at(policy, instant).blocks(lifetime),
    )
    return KeyAsOf(
        key_id=minted.originator_id,
        owner_id=minted.owner_id,
        name=minted.name,
        prefix=minted.prefix,
        status=status,
        scopes=in_order(scopes),
        created_at=minted.at,
        expires_at=minted.expires_at,
        revoked_at=revoked_at,
        as_of=instant,
    )


def verify_as_of(
    events: Events, instant: datetime, required: Sequence[str], policy: PolicyEvents = ()
) -> Code:
    """Whether the key's token would have been accepted for required at instant."""
    key = key_as_of(events, instant, policy)
    if key is None or key.status != "active":
        return "invalid_token"
    # As live verification: any required scope not held, known or not, is insufficient.
    if any(scope not in key.scopes for scope in required):
        return "insufficient_scope"
    return "valid"


def scope_intervals(
    events: Events, scope: str, since: datetime, until: datetime, policy: PolicyEvents = ()
) -> list[Interval]:
    """Half-open intervals within [since, until) when the key was usable and held scope: not
    suspended, not blocked by the lifetime policy in force, and not yet ended."""
    since, until = _utc(since, "since"), _utc(until, "until")
    checked = _checked(events)
    if checked is None or since >= until:
        return []
    minted, later = checked
    # Usable from minting until the first of revocation, recorded expiry, the expiry instant and
    # the end of a rotation's grace.
    stops = [e.at for e in later if isinstance(e, ApiKey.Revoked | ApiKey.Expired)]
    stops += [e.retires_at for e in later if isinstance(e, ApiKey.Rotated)]
    if minted.expires_at is not None:
        stops.append(minted.expires_at)
    lo = max(since, minted.at)
    hi = min([until, *stops])
    if lo >= hi:
        return []
    # Scopes at t are those of the latest-recorded grant with at <= t (as in key_as_of), so
    # sweep the grants by at, keeping the latest-recorded one seen so far.
    grants = [(minted.at, 0, scope in minted.scopes)]
    grants += [
        (e.at, position, scope in e.scopes)
        for position, e in enumerate(later, start=1)
        if isinstance(e, ApiKey.ScopesSet)
    ]
    grants.sort(key=lambda g: g[0])
    changes: list[tuple[datetime, bool]] = []
    latest = -1
    for at, position, holds in grants:
        if position > latest:
            latest = position
            if changes and changes[-1][0] == at:
                changes[-1] = (at, holds)
            else:
                changes.append((at, holds))
    held = _true_intervals(changes, lo, hi)
    return _intersection(held, _usable_intervals(minted, later, policy, lo, hi))


def _true_intervals(
    changes: list[tuple[datetime, bool]], lo: datetime, hi: datetime
) -> list[Interval]:
    """The intervals within [lo, hi) where a flag set at each change holds true."""
    intervals: list[Interval] = []
    for i, (start, holds) in enumerate(changes):
        end = changes[i + 1][0] if i + 1 < len(changes) else hi
        start, end = max(start, lo), min(end, hi)
        if not holds or start >= end:
            continue
        if intervals and intervals[-1][1] == start:
            intervals[-1] = (intervals[-1][0], end)
        else:
            intervals.append((start, end))
    return intervals


def _usable_intervals(
    minted: ApiKey.Minted, later: list[Later], policy: PolicyEvents, lo: datetime, hi: datetime
) -> list[Interval]:
    """Within [lo, hi): when the key was neither suspended nor blocked by the policy."""
    lifetime = None if minted.expires_at is None else minted.expires_at - minted.at
    # Each change of either, by instant, the later-recorded one winning within an instant.
    toggles: list[tuple[datetime, int, str, bool]] = [
        (e.at, position, "suspended", isinstance(e, ApiKey.Suspended))
        for position, e in enumerate(later)
        if isinstance(e, ApiKey.Suspended | ApiKey.Resumed)
    ]
    toggles += [
        (e.at, position, "blocked", terms_of(e).blocks(lifetime))
        for position, e in enumerate(policy)
    ]
    toggles.sort(key=lambda t: (t[0], t[1]))
    state = {"suspended": False, "blocked": False}
    changes: list[tuple[datetime, bool]] = [(minted.at, True)]
    for at, _, which, value in toggles:
        state[which] = value
        usable = not (state["suspended"] or state["blocked"])
        if changes[-1][0] == at:
            changes[-1] = (at, usable)
        elif at > changes[-1][0]:
            changes.append((at, usable))
        else:
            # A policy set before the key was minted: in force from its minting.
            changes[0] = (minted.at, usable)
    return _true_intervals(changes, lo, hi)


def _intersection(a: list[Interval], b: list[Interval]) -> list[Interval]:
    """Where two sorted lists of disjoint half-open intervals overlap."""
    out: list[Interval] = []
    i = j = 0
    while i < len(a) and j < len(b):
        start, end = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if start < end:
            out.append((start, end))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


def _checked(events: Events) -> tuple[ApiKey.Minted, list[Later]] | None:
    """Minted and the events after it, checked to be one key's; None for no events."""
    if not events:
        return None
    minted, *rest = events
    if not isinstance(minted, ApiKey.Minted):
        raise ValueError(f"a key's history starts with Minted, not {type(minted).__name__}")
    later: list[Later] = []
    for e in rest:
        # An event type this module does not know could change the answer: refuse, not guess.
        if not isinstance(
            e,
            ApiKey.ScopesSet
            | ApiKey.Revoked
            | ApiKey.Expired
            | ApiKey.Rotated
            | ApiKey.Suspended
            | ApiKey.Resumed,
        ):
            raise ValueError(f"unknown key event {type(e).__name__}")
        if e.originator_id != minted.originator_id:
            raise ValueError("events of more than one key")
        later.append(e)
    return minted, later


def _utc(instant: datetime, name: str) -> datetime:
    """An aware instant in UTC; a naive one names no instant at all."""
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware")
    return instant.astimezone(UTC)
