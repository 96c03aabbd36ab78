"""A key's past from its events: key_as_of, verify_as_of, scope_intervals, scope changes."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone
from functools import reduce
from typing import Any
from uuid import uuid4

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain import token
from domain.api_key import ApiKey
from domain.errors import KeyNotActive
from domain.scopes import SCOPES
from domain.timeline import (
    KeyAsOf,
    key_as_of,
    scope_change,
    scope_intervals,
    verify_as_of,
    widened,
)
from ledger.key_ledger import KeyLedger
from tests.conftest import FakeClock

T0 = datetime(2027, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)
US = timedelta(microseconds=1)
READ, WRITE, ACCOUNT = "books:read", "books:write", "account:read"


def mint(scopes: Sequence[str] = (READ,), days: int | None = None, at: datetime = T0) -> ApiKey:
    t = token.generate()
    return ApiKey.mint(
        key_id=uuid4(),
        owner_id="u1",
        name="deploy",
        token_sha256=token.digest(t).hex(),
        prefix=token.display_prefix(t),
        scopes=list(scopes),
        expires_in_days=days,
        actor="user:u1",
        at=at,
    )


def events_of(key: ApiKey) -> list[Any]:
    return list(key.collect_events())


# Specifications: key_as_of


def test_before_minting_there_is_no_key() -> None:
    events = events_of(mint())
    assert key_as_of(events, T0 - US) is None
    assert key_as_of([], T0) is None


def test_at_the_minting_instant_the_key_is_as_minted() -> None:
    key = mint(scopes=[ACCOUNT, READ, ACCOUNT], days=2)
    events = events_of(key)
    assert key_as_of(events, T0) == KeyAsOf(
        key_id=key.id,
        owner_id="u1",
        name="deploy",
        prefix=key.prefix,
        status="active",
        scopes=(READ, ACCOUNT),
        created_at=T0,
        expires_at=T0 + 2 * DAY,
        revoked_at=None,
        as_of=T0,
    )


def test_a_scope_change_counts_from_its_own_instant() -> None:
    key = mint(scopes=[READ])
    key.set_scopes([WRITE, READ], actor="user:u1", at=T0 + DAY)
    events = events_of(key)
    assert key_as_of(events, T0 + DAY - US).scopes == (READ,)  # type: ignore[union-attr]
    assert key_as_of(events, T0 + DAY).scopes == (READ, WRITE)  # type: ignore[union-attr]


def test_revocation_holds_from_its_instant_and_not_before() -> None:
    key = mint()
    key.revoke(actor="user:u1", reason="leaked", at=T0 + DAY)
    events = events_of(key)
    before = key_as_of(events, T0 + DAY - US)
    after = key_as_of(events, T0 + 10 * DAY)
    assert before is not None and (before.status, before.revoked_at) == ("active", None)
    assert after is not None and (after.status, after.revoked_at) == ("revoked", T0 + DAY)


def test_expiry_holds_from_expires_at_whether_or_not_expired_was_recorded() -> None:
    key = mint(days=1)
    unswept = events_of(key)
    key.expire(at=T0 + 3 * DAY)
    swept = unswept + events_of(key)
    for events in (unswept, swept):
        assert key_as_of(events, T0 + DAY - US).status == "active"  # type: ignore[union-attr]
        assert key_as_of(events, T0 + DAY).status == "expired"  # type: ignore[union-attr]
        assert key_as_of(events, T0 + 5 * DAY).status == "expired"  # type: ignore[union-attr]


def test_a_key_revoked_after_its_unswept_expiry_is_expired_then_revoked() -> None:
    key = mint(days=1)
    key.revoke(actor="user:u1", reason="", at=T0 + 2 * DAY)
    events = events_of(key)
    assert key_as_of(events, T0 + DAY).status == "expired"  # type: ignore[union-attr]
    assert key_as_of(events, T0 + 2 * DAY).status == "revoked"  # type: ignore[union-attr]


def test_instants_in_other_zones_are_the_same_instants_reported_in_utc() -> None:
    events = events_of(mint())
    paris = timezone(timedelta(hours=1))
    key = key_as_of(events, datetime(2027, 1, 1, 1, 0, tzinfo=paris))
    assert key is not None and key.as_of == T0 and key.as_of.tzinfo is UTC
    assert key_as_of(events, datetime(2027, 1, 1, 0, 59, tzinfo=paris)) is None


def test_a_naive_instant_is_refused() -> None:
    events = events_of(mint())
    with pytest.raises(ValueError, match="timezone-aware"):
        key_as_of(events, datetime(2027, 1, 2))
    with pytest.raises(ValueError, match="timezone-aware"):
        scope_intervals(events, READ, datetime(2027, 1, 2), T0 + DAY)


def test_a_history_must_start_with_minted_and_be_one_keys() -> None:
    key = mint()
    key.revoke(actor="user:u1", reason="", at=T0)
    _minted, revoked = events_of(key)
    with pytest.raises(ValueError, match="starts with Minted"):
        key_as_of([revoked], T0)
    with pytest.raises(ValueError, match="more than one key"):
        key_as_of([*events_of(mint()), revoked], T0)


def test_if_the_clock_stepped_back_the_later_record_still_wins() -> None:
    # set_scopes A at T0+10s, then B recorded after it but stamped T0+5s.
    key = mint(scopes=[READ])
    key.set_scopes([WRITE], actor="user:u1", at=T0 + timedelta(seconds=10))
    key.set_scopes([ACCOUNT], actor="user:u1", at=T0 + timedelta(seconds=5))
    events = events_of(key)
    for seconds, scopes in [(4, (READ,)), (5, (ACCOUNT,)), (10, (ACCOUNT,)), (99, (ACCOUNT,))]:
        at = T0 + timedelta(seconds=seconds)
        assert key_as_of(events, at).scopes == scopes  # type: ignore[union-attr]
    assert scope_intervals(events, WRITE, T0, T0 + DAY) == []
    assert scope_intervals(events, ACCOUNT, T0, T0 + DAY) == [(T0 + timedelta(seconds=5), T0 + DAY)]


# Specifications: verify_as_of


def test_verify_as_of_follows_the_live_rules() -> None:
    key = mint(scopes=[READ, WRITE], days=3)
    key.set_scopes([READ], actor="user:u1", at=T0 + DAY)
    key.revoke(actor="user:u1", reason="", at=T0 + 2 * DAY)
    events = events_of(key)
    assert verify_as_of(events, T0 - US, []) == "invalid_token"
    assert verify_as_of(events, T0, []) == "valid"
    assert verify_as_of(events, T0, [READ, WRITE]) == "valid"
    assert verify_as_of(events, T0 + DAY, [READ, WRITE]) == "insufficient_scope"
    assert verify_as_of(events, T0 + DAY, ["no:such"]) == "insufficient_scope"
    assert verify_as_of(events, T0 + 2 * DAY - US, [READ]) == "valid"
    assert verify_as_of(events, T0 + 2 * DAY, [READ]) == "invalid_token"


def test_verify_as_of_an_expired_key_is_invalid_from_the_expiry_instant() -> None:
    events = events_of(mint(days=1))
    assert verify_as_of(events, T0 + DAY - US, [READ]) == "valid"
    assert verify_as_of(events, T0 + DAY, []) == "invalid_token"


# Specifications: scope_intervals


def test_intervals_run_from_grant_to_removal_and_stop_at_revocation() -> None:
    key = mint(scopes=[READ, WRITE])
    key.set_scopes([READ], actor="user:u1", at=T0 + DAY)
    key.set_scopes([READ, WRITE], actor="user:u1", at=T0 + 2 * DAY)
    key.revoke(actor="user:u1", reason="", at=T0 + 3 * DAY)
    events = events_of(key)
    far = T0 + 30 * DAY
    assert scope_intervals(events, WRITE, T0 - DAY, far) == [
        (T0, T0 + DAY),
        (T0 + 2 * DAY, T0 + 3 * DAY),
    ]
    # A change that keeps the scope does not split its interval.
    assert scope_intervals(events, READ, T0 - DAY, far) == [(T0, T0 + 3 * DAY)]
    assert scope_intervals(events, ACCOUNT, T0 - DAY, far) == []


def test_intervals_are_clipped_to_since_and_until() -> None:
    key = mint(scopes=[WRITE])
    key.set_scopes([READ], actor="user:u1", at=T0 + 2 * DAY)
    events = events_of(key)
    assert scope_intervals(events, WRITE, T0 + DAY, T0 + 10 * DAY) == [(T0 + DAY, T0 + 2 * DAY)]
    assert scope_intervals(events, READ, T0, T0 + 3 * DAY) == [(T0 + 2 * DAY, T0 + 3 * DAY)]
    assert scope_intervals(events, READ, T0, T0 + 2 * DAY) == []
    assert scope_intervals(events, WRITE, T0 + DAY, T0 + DAY) == []
    assert scope_intervals(events, WRITE, T0 + DAY, T0) == []


def test_intervals_end_at_expiry_even_when_it_was_swept_later() -> None:
    key = mint(scopes=[WRITE], days=2)
    key.expire(at=T0 + 5 * DAY)
    assert scope_intervals(events_of(key), WRITE, T0, T0 + 9 * DAY) == [(T0, T0 + 2 * DAY)]


def test_a_scope_removed_at_the_minting_instant_was_never_held() -> None:
    key = mint(scopes=[WRITE])
    key.set_scopes([READ], actor="user:u1", at=T0)
    events = events_of(key)
    assert scope_intervals(events, WRITE, T0 - DAY, T0 + DAY) == []
    assert scope_intervals(events, READ, T0 - DAY, T0 + DAY) == [(T0, T0 + DAY)]


# Specifications: scope changes


def test_scope_change_and_widened() -> None:
    assert scope_change([READ, WRITE], [ACCOUNT, READ]) == ((ACCOUNT,), (WRITE,))
    assert scope_change([READ], [READ]) == ((), ())
    assert scope_change([], [ACCOUNT, "retired:scope", READ]) == (
        (READ, ACCOUNT, "retired:scope"),
        (),
    )
    assert widened([READ], [READ, WRITE])
    assert widened([READ, WRITE], [ACCOUNT])
    assert not widened([READ, WRITE], [WRITE])
    assert not widened([READ], [READ])


# Properties: random lifecycles of a real ApiKey, checked against a replay of its events

scope_sets = st.lists(st.sampled_from(list(SCOPES)), min_size=1, max_size=6, unique=True)
required_sets = st.lists(st.sampled_from(list(SCOPES)), max_size=3, unique=True)
steps: st.SearchStrategy[tuple[str, Any]] = st.one_of(
    st.tuples(st.just("advance"), st.integers(min_value=0, max_value=3 * 86_400)),
    st.tuples(st.just("tick"), st.just(0)),
    st.tuples(st.just("set_scopes"), scope_sets),
    st.tuples(st.just("revoke"), st.just(0)),
    st.tuples(st.just("expire"), st.just(0)),
)


@st.composite
def lifecycles(draw: st.DrawFn, backwards: bool = False) -> list[Any]:
    """A minted key driven by random commands at explicit instants; its events."""
    key = mint(scopes=draw(scope_sets), days=draw(st.none() | st.integers(1, 5)))
    now = T0
    for step, arg in draw(st.lists(steps, max_size=12)):
        if step == "advance":
            # The backwards variant lets the clock step back, as a wall clock can.
            back = draw(st.integers(0, 4 * 86_400)) if backwards and draw(st.booleans()) else 0
            now += timedelta(seconds=arg - back)
        elif step == "tick":
            now += US
        elif step == "set_scopes":
            with contextlib.suppress(KeyNotActive):
                key.set_scopes(arg, actor="user:u1", at=now)
        elif step == "revoke":
            key.revoke(actor="user:u1", reason="", at=now)
        else:
            key.expire(at=now)
    return events_of(key)


def probe_instants(events: Sequence[Any]) -> list[datetime]:
    """Before minting, exactly at and either side of every event and of expiry, between, after."""
    points = sorted({e.at for e in events} | {e.expires_at for e in events[:1] if e.expires_at})
    around = {p + d for p in points for d in (-US, timedelta(0), US)}
    between = {a + (b - a) / 2 for a, b in itertools.pairwise(points)}
    return sorted(around | between | {points[0] - DAY, points[-1] + 6 * DAY})


def replay(events: Sequence[Any], t: datetime) -> ApiKey | None:
    """The aggregate rebuilt by the library from only the events recorded at or before t."""
    seen = [e for e in events if e.at <= t]
    # With a clock that never steps back these are a prefix: the library checks the versions.
    assert seen == list(events[: len(seen)])
    key: ApiKey | None = reduce(lambda key, e: e.mutate(key), seen, None)
    return key


def expected_as_of(key: ApiKey | None, t: datetime) -> KeyAsOf | None:
    if key is None:
        return None
    return KeyAsOf(
        key_id=key.id,
        owner_id=key.owner_id,
        name=key.name,
        prefix=key.prefix,
        status=key.status(t),  # type: ignore[arg-type]
        scopes=tuple(key.scopes),
        created_at=key.minted_at,
        expires_at=key.expires_at,
        revoked_at=key.revoked_at,
        as_of=t,
    )


def expected_verification(key: ApiKey | None, t: datetime, required: Sequence[str]) -> str:
    if key is None or key.status(t) != "active":
        return "invalid_token"
    return "valid" if set(required) <= set(key.scopes) else "insufficient_scope"


instants = st.datetimes(
    min_value=datetime(2026, 12, 30), max_value=datetime(2027, 2, 15), timezones=st.just(UTC)
)


@settings(max_examples=300, deadline=None)
@given(events=lifecycles(), extra=instants, required=required_sets)
def test_key_as_of_and_verify_as_of_agree_with_a_replay(
    events: list[Any], extra: datetime, required: list[str]
) -> None:
    for t in [*probe_instants(events), extra]:
        key = replay(events, t)
        assert key_as_of(events, t) == expected_as_of(key, t), t
        assert verify_as_of(events, t, required) == expected_verification(key, t, required), t


@settings(max_examples=500, deadline=None)
@given(
    data=st.data(),
    events=st.booleans().flatmap(lambda back: lifecycles(backwards=back)),
    scope=st.sampled_from(list(SCOPES)),
)
def test_scope_intervals_hold_exactly_when_the_key_was_active_with_the_scope(
    data: st.DataObject, events: list[Any], scope: str
) -> None:
    probes = probe_instants(events)
    ends = st.sampled_from(probes) | instants
    since, until = sorted([data.draw(ends), data.draw(ends)])
    intervals = scope_intervals(events, scope, since, until)
    # Sorted, non-empty, merged (no overlap, no touching), within [since, until).
    for start, end in intervals:
        assert since <= start < end <= until
    for (_, end), (start, _) in itertools.pairwise(intervals):
        assert end < start
    inside = [t for t in [*probes, since, until - US] if since <= t < until]
    if since < until:
        span = (until - since) // US
        inside.append(since + data.draw(st.integers(0, span - 1)) * US)
    for t in inside:
        key = key_as_of(events, t)
        held = key is not None and key.status == "active" and scope in key.scopes
        assert any(start <= t < end for start, end in intervals) == held, t


# Property: what the live ledger answered then, the history answers now


ledger_steps: st.SearchStrategy[tuple[str, Any]] = st.one_of(
    st.tuples(st.just("advance"), st.integers(min_value=0, max_value=3 * 86_400)),
    st.tuples(st.just("set_scopes"), scope_sets),
    st.tuples(st.just("revoke"), st.just(0)),
    st.tuples(st.just("sweep"), st.just(0)),
)


@settings(max_examples=60, deadline=None)
@given(
    scopes=scope_sets,
    days=st.none() | st.integers(1, 5),
    plan=st.lists(ledger_steps, max_size=12),
    asks=st.lists(required_sets, min_size=1, max_size=3),
)
def test_verify_as_of_repeats_what_live_verification_answered_at_the_time(
    scopes: list[str], days: int | None, plan: list[tuple[str, Any]], asks: list[list[str]]
) -> None:
    clock = FakeClock()
    ledger = KeyLedger({"PERSISTENCE_MODULE": "eventsourcing.popo"}, clock=clock)
    try:
        minted = ledger.mint(
            owner_id="u1", name="k", scopes=scopes, expires_in_days=days, actor="user:u1"
        )
        key_id = minted.record.key_id
        # Keyed by instant: an answer given before a later event of the same instant is
        # superseded, since as of an instant means after everything recorded at it.
        answered: dict[tuple[datetime, tuple[str, ...]], tuple[str, str]] = {}
        for step, arg in [("advance", 0), *plan]:
            if step == "advance":
                clock.advance(arg)
            elif step == "set_scopes":
                with contextlib.suppress(KeyNotActive):
                    ledger.set_scopes(key_id, arg, actor="user:u1")
            elif step == "revoke":
                ledger.revoke(key_id, actor="user:u1")
            else:
                for due in ledger.due_for_expiry():
                    ledger.expire(due)
            now = ledger.now()
            status = ledger.status(ledger.key(key_id))
            for required in asks:
                code = ledger.verify(minted.token, required).code
                answered[now, tuple(required)] = (code, status)
        history = ledger.history(key_id)
        for (at, asked), (said, was) in answered.items():
            assert verify_as_of(history, at, asked) == said, (at, asked)
            assert key_as_of(history, at).status == was  # type: ignore[union-attr]
    finally:
        ledger.close()
