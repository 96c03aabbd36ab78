"""The key lifecycle's rules in the domain: rotation with a grace, suspension, and the lifetime
policy — and a key's past judged with them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest

from domain import token
from domain.api_key import MAX_GRACE_SECONDS, ApiKey
from domain.errors import InvalidInput, KeyAlreadyRotated, KeyNotActive
from domain.lifetime_policy import POLICY_ID, LifetimePolicy, Terms
from domain.timeline import key_as_of, scope_intervals, verify_as_of

T0 = datetime(2027, 1, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


def mint(days: int | None = None, at: datetime = T0, **more: Any) -> ApiKey:
    t = token.generate()
    return ApiKey.mint(
        key_id=uuid4(),
        owner_id="u1",
        name="deploy",
        token_sha256=token.digest(t).hex(),
        prefix=token.display_prefix(t),
        scopes=["books:read"],
        expires_in_days=days,
        actor="user:u1",
        at=at,
        **more,
    )


def names(key: ApiKey) -> list[str]:
    return [type(e).__name__ for e in key.collect_events()]


# Rotation


def test_a_rotated_key_lives_on_for_its_grace_then_stops_for_good() -> None:
    key = mint(days=30)
    successor = uuid4()
    # Rotate with an hour of grace: the key names its successor and when it stops
    retires = key.rotate(successor, HOUR, "user:u1", T0 + DAY)
    assert retires == T0 + DAY + HOUR
    assert names(key) == ["Minted", "Rotated"]
    assert key.successor_id == successor
    # Within the grace it is active; from its end it is rotated, which nothing undoes
    assert key.status(T0 + DAY + HOUR - timedelta(microseconds=1)) == "active"
    assert key.status(T0 + DAY + HOUR) == "rotated"
    with pytest.raises(KeyNotActive):
        key.set_scopes(["books:write"], "user:u1", T0 + 2 * DAY)
    with pytest.raises(KeyNotActive):
        key.suspend("user:u1", T0 + 2 * DAY)


def test_the_grace_never_outlasts_the_keys_own_expiry() -> None:
    key = mint(days=1)
    retires = key.rotate(uuid4(), timedelta(seconds=MAX_GRACE_SECONDS), "u", T0 + 23 * HOUR)
    assert retires == T0 + DAY


@pytest.mark.parametrize("seconds", [-1, MAX_GRACE_SECONDS + 1])
def test_a_grace_out_of_range_is_refused_naming_the_field(seconds: int) -> None:
    key = mint()
    with pytest.raises(InvalidInput) as refused:
        key.rotate(uuid4(), timedelta(seconds=seconds), "u", T0)
    assert refused.value.field == "grace_seconds"
    assert names(key) == ["Minted"]


def test_a_key_rotates_once_unless_its_successor_is_being_replaced() -> None:
    key = mint()
    first = uuid4()
    retires = key.rotate(first, HOUR, "u", T0)
    # A second rotation is refused, naming the successor
    with pytest.raises(KeyAlreadyRotated) as refused:
        key.rotate(uuid4(), HOUR, "u", T0 + HOUR / 2)
    assert refused.value.successor_id == str(first)
    # A retry replacing the successor keeps the first stop: the grace does not grow
    second = uuid4()
    assert key.rotate(second, HOUR, "u", T0 + HOUR / 2, replacing=True) == retires
    assert key.successor_id == second


def test_a_suspended_revoked_or_expired_key_is_not_rotated() -> None:
    suspended = mint()
    suspended.suspend("u", T0)
    revoked = mint()
    revoked.revoke("u", "", T0)
    expired = mint(days=1)
    for key, at in ((suspended, T0), (revoked, T0), (expired, T0 + DAY)):
        with pytest.raises(KeyNotActive):
            key.rotate(uuid4(), HOUR, "u", at)


def test_a_successor_names_its_predecessor() -> None:
    predecessor = uuid4()
    successor = mint(predecessor_id=predecessor)
    (minted,) = successor.collect_events()
    assert minted.predecessor_id == predecessor  # type: ignore[attr-defined]


# Suspension


def test_a_suspended_key_is_refused_until_resumed_and_keeps_its_changes() -> None:
    key = mint()
    assert key.suspend("user:u1", T0, reason="investigating")
    assert key.status(T0) == "suspended"
    # Suspending again changes nothing
    assert not key.suspend("user:u1", T0)
    # Its scopes can still be narrowed while it is suspended
    assert key.set_scopes(["account:read"], "user:u1", T0 + HOUR)
    assert key.resume("operator:ops", T0 + 2 * HOUR)
    assert key.status(T0 + 2 * HOUR) == "active"
    assert not key.resume("operator:ops", T0 + 2 * HOUR)
    assert names(key) == ["Minted", "Suspended", "ScopesSet", "Resumed"]


def test_a_revoked_or_expired_key_is_neither_suspended_nor_resumed() -> None:
    key = mint(days=1)
    with pytest.raises(KeyNotActive):
        key.suspend("u", T0 + DAY)
    with pytest.raises(KeyNotActive):
        key.resume("u", T0 + DAY)


def test_a_token_in_a_suspension_reason_is_refused() -> None:
    key = mint()
    with pytest.raises(InvalidInput) as refused:
        key.suspend("u", T0, reason=f"leaked {token.generate()}")
    assert refused.value.field == "reason"


# The lifetime policy


def test_the_policy_refuses_at_mint_naming_its_limit() -> None:
    terms = Terms(max_lifetime_days=90)
    refusal = terms.refusal(365)
    assert refusal is not None and refusal.field == "expires_in_days"
    assert "at most 90 days" in refusal.message
    no_expiry = terms.refusal(None)
    assert no_expiry is not None and "90 days" in no_expiry.message
    assert terms.refusal(90) is None
    assert Terms(expiry_required=True).refusal(None) is not None
    assert Terms().refusal(None) is None


def test_the_policy_blocks_keys_it_no_longer_allows() -> None:
    terms = Terms(max_lifetime_days=30)
    assert terms.blocks(None)
    assert terms.blocks(31 * DAY)
    assert not terms.blocks(30 * DAY)
    assert not Terms().blocks(None)


@pytest.mark.parametrize(
    ("terms", "field"),
    [
        (Terms(max_lifetime_days=0), "max_lifetime_days"),
        (Terms(max_lifetime_days=3651), "max_lifetime_days"),
        (Terms(revoke_unused_after_days=0), "revoke_unused_after_days"),
    ],
)
def test_terms_out_of_range_are_refused_naming_the_field(terms: Terms, field: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        LifetimePolicy.first(terms, "operator:ops", T0)
    assert refused.value.field == field


def test_the_policy_is_one_aggregate_changed_by_events() -> None:
    policy = LifetimePolicy.first(Terms(max_lifetime_days=90), "operator:ops", T0)
    assert policy.id == POLICY_ID
    assert policy.change(Terms(max_lifetime_days=30), "operator:ops", T0 + DAY)
    assert not policy.change(Terms(max_lifetime_days=30), "operator:ops", T0 + 2 * DAY)
    assert [type(e).__name__ for e in policy.collect_events()] == ["Set", "Changed"]


# The past, judged with all of it


def test_as_of_a_key_is_blocked_only_while_a_policy_forbade_it() -> None:
    key = mint(days=365)
    events = list(key.collect_events())
    policy = LifetimePolicy.first(Terms(max_lifetime_days=90), "operator:ops", T0 + DAY)
    policy.change(Terms(max_lifetime_days=400), "operator:ops", T0 + 3 * DAY)
    set_events = list(policy.collect_events())
    # Before the policy, allowed; under it, blocked; after it was relaxed, allowed again
    status = [key_as_of(events, T0 + d * DAY + HOUR, set_events) for d in (0, 1, 3)]
    assert [k.status for k in status if k] == ["active", "blocked", "active"]
    assert verify_as_of(events, T0 + DAY + HOUR, ["books:read"], set_events) == "invalid_token"
    assert verify_as_of(events, T0 + 3 * DAY + HOUR, ["books:read"], set_events) == "valid"


def test_as_of_suspensions_and_rotation_hold_from_their_instants() -> None:
    key = mint()
    key.suspend("u", T0 + HOUR)
    key.resume("u", T0 + 2 * HOUR)
    key.rotate(uuid4(), HOUR, "u", T0 + 3 * HOUR)
    events = list(key.collect_events())
    at = [T0, T0 + HOUR, T0 + 2 * HOUR, T0 + 3 * HOUR, T0 + 4 * HOUR]
    assert [k.status for k in (key_as_of(events, t) for t in at) if k] == [
        "active",
        "suspended",
        "active",
        "active",
        "rotated",
    ]


def test_exposure_skips_suspensions_and_blocked_spells_and_ends_at_retirement() -> None:
    key = mint(days=365)
    key.suspend("u", T0 + HOUR)
    key.resume("u", T0 + 2 * HOUR)
    key.rotate(uuid4(), HOUR, "u", T0 + 10 * HOUR)
    events = list(key.collect_events())
    policy = LifetimePolicy.first(Terms(max_lifetime_days=30), "operator:ops", T0 + 4 * HOUR)
    policy.change(Terms(), "operator:ops", T0 + 6 * HOUR)
    set_events = list(policy.collect_events())
    intervals = scope_intervals(events, "books:read", T0, T0 + DAY, set_events)
    assert intervals == [
        (T0, T0 + HOUR),
        (T0 + 2 * HOUR, T0 + 4 * HOUR),
        (T0 + 6 * HOUR, T0 + 11 * HOUR),
    ]
