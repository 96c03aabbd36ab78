"""The verification index and the key lifecycle: a rotated key stops at the end of its grace, a
suspended one until it is resumed, and the lifetime policy blocks the keys it no longer allows —
each refused as `invalid_token` with a description — in the live index and in one rebuilt from
the store alike."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest
from eventsourcing.application import AggregateNotFoundError

from domain import token as token_format
from domain.api_key import ApiKey
from domain.lifetime_policy import POLICY_ID, LifetimePolicy, Terms
from ledger.key_ledger import KeyLedger, MintedKey
from tests.conftest import FakeClock

DAY = 86_400.0
HOUR = 3_600.0


@pytest.fixture
def ledger(clock: FakeClock) -> KeyLedger:
    return KeyLedger({"PERSISTENCE_MODULE": "eventsourcing.popo"}, clock=clock)


def mint(ledger: KeyLedger, days: int | None = None) -> MintedKey:
    return ledger.mint(
        owner_id="u1", name="ci", scopes=["books:read"], expires_in_days=days, actor="user:u1"
    )


def mint_unchecked(ledger: KeyLedger, days: int) -> str:
    """Mint a key as a process that has not seen the lifetime policy yet would; its token."""
    token = token_format.generate()
    key = ApiKey.mint(
        key_id=uuid4(),
        owner_id="u1",
        name="ci",
        token_sha256=token_format.digest(token).hex(),
        prefix=token_format.display_prefix(token),
        scopes=["books:read"],
        expires_in_days=days,
        actor="user:u1",
        at=ledger.now(),
    )
    ledger.record(list(key.collect_events()))
    return token


def change_key(ledger: KeyLedger, key_id: UUID, command: str, *args: Any) -> None:
    """Run a lifecycle command on the aggregate and record its events, as a command would."""
    key: Any = ledger.repository.get(key_id)
    getattr(key, command)(*args)
    ledger.record(list(key.collect_events()))


def set_policy(ledger: KeyLedger, terms: Terms) -> None:
    """Set or change the lifetime policy, recorded in the ledger's store."""
    at = ledger.now()
    try:
        policy: Any = ledger.repository.get(POLICY_ID)
    except AggregateNotFoundError:
        policy = LifetimePolicy.first(terms, "operator:ops", at)
    else:
        policy.change(terms, "operator:ops", at)
    ledger.record(list(policy.collect_events()))


def rebuilt(ledger: KeyLedger) -> KeyLedger:
    """Another process's ledger on the same store, its index built by replaying every event."""
    other = KeyLedger(beside=ledger, clock=ledger.clock)
    other.catch_up()
    return other


def status(ledger: KeyLedger, minted: MintedKey) -> str:
    """The key's status now, as the key list shows it."""
    return ledger.status(ledger.key(minted.record.key_id))


def answer(ledger: KeyLedger, token: str) -> tuple[str, str]:
    v = ledger.verify(token, ["books:read"])
    return v.code, v.description


def test_a_rotated_key_verifies_through_its_grace_then_answers_that_it_was_rotated(
    ledger: KeyLedger, clock: FakeClock
) -> None:
    old = mint(ledger, days=30)
    # Rotate it with an hour of grace
    at = ledger.now()
    change_key(ledger, old.record.key_id, "rotate", uuid4(), timedelta(hours=1), "user:u1", at)
    # Within the grace it is valid; from its end it is refused, saying why
    clock.advance(HOUR - 1)
    assert answer(ledger, old.token) == ("valid", "")
    clock.advance(1)
    assert answer(ledger, old.token) == ("invalid_token", "the key was rotated")
    assert status(ledger, old) == "rotated"
    # A process that replays the store agrees
    other = rebuilt(ledger)
    assert answer(other, old.token) == ("invalid_token", "the key was rotated")
    assert other.index.fields() == ledger.index.fields()


def test_a_grace_ending_at_the_keys_expiry_answers_as_expired(
    ledger: KeyLedger, clock: FakeClock
) -> None:
    old = mint(ledger, days=1)
    clock.advance(23 * HOUR)
    change_key(
        ledger, old.record.key_id, "rotate", uuid4(), timedelta(days=1), "user:u1", ledger.now()
    )
    clock.advance(HOUR)
    # Expiry comes first in the status rule: no description, like any expired key
    assert answer(ledger, old.token) == ("invalid_token", "")
    assert status(ledger, old) == "expired"


def test_a_suspended_key_is_refused_until_it_is_resumed(ledger: KeyLedger) -> None:
    minted = mint(ledger)
    key_id = minted.record.key_id
    # Suspend it: refused, saying why
    change_key(ledger, key_id, "suspend", "user:u1", ledger.now(), "lost laptop")
    assert answer(ledger, minted.token) == ("invalid_token", "the key is suspended")
    assert ledger.verify(minted.token).record is None
    assert status(ledger, minted) == "suspended"
    assert answer(rebuilt(ledger), minted.token) == ("invalid_token", "the key is suspended")
    # Resume it: valid again
    change_key(ledger, key_id, "resume", "user:u1", ledger.now())
    assert answer(ledger, minted.token) == ("valid", "")
    assert status(ledger, minted) == "active"
    assert rebuilt(ledger).index.fields() == ledger.index.fields()


def test_a_revoked_key_answers_as_revoked_even_if_suspended_before(ledger: KeyLedger) -> None:
    minted = mint(ledger)
    change_key(ledger, minted.record.key_id, "suspend", "user:u1", ledger.now())
    ledger.revoke(minted.record.key_id, actor="user:u1")
    # Revoked is terminal and says nothing more than an unknown token
    assert answer(ledger, minted.token) == ("invalid_token", "")


def test_a_tightened_policy_blocks_the_keys_it_no_longer_allows_and_relaxing_it_unblocks(
    ledger: KeyLedger,
) -> None:
    forever = mint(ledger)
    year = mint(ledger, days=365)
    month = mint(ledger, days=30)
    # At most 30 days: the key that never expires and the year-long one are blocked
    set_policy(ledger, Terms(max_lifetime_days=30))
    reason = "the key lifetime policy: keys may live at most 30 days"
    assert answer(ledger, forever.token) == ("invalid_token", reason)
    assert answer(ledger, year.token) == ("invalid_token", reason)
    assert answer(ledger, month.token) == ("valid", "")
    assert status(ledger, year) == "blocked"
    assert ledger.index.terms == Terms(max_lifetime_days=30)
    # A key another process minted before it saw the policy is judged by it at once
    later = mint_unchecked(ledger, days=400)
    assert answer(ledger, later) == ("invalid_token", reason)
    # A replayed index agrees, record by record
    other = rebuilt(ledger)
    assert other.index.fields() == ledger.index.fields()
    assert other.index.terms == ledger.index.terms
    # Relaxed to 365 days with an expiry required: the year-long key works again
    set_policy(ledger, Terms(max_lifetime_days=365, expiry_required=True))
    reason = "the key lifetime policy: keys may live at most 365 days"
    assert answer(ledger, year.token) == ("valid", "")
    assert answer(ledger, forever.token) == ("invalid_token", reason)
    assert answer(ledger, later) == ("invalid_token", reason)
    # Relaxed entirely: every key works, with no event on any key
    set_policy(ledger, Terms())
    assert answer(ledger, later) == ("valid", "")
    for minted in (forever, year, month):
        assert answer(ledger, minted.token) == ("valid", "")
        assert [type(e).__name__ for e in ledger.history(minted.record.key_id)] == ["Minted"]
    assert rebuilt(ledger).index.fields() == ledger.index.fields()


def test_an_older_policy_event_met_again_changes_nothing(ledger: KeyLedger) -> None:
    minted = mint(ledger)
    set_policy(ledger, Terms(expiry_required=True))
    set_policy(ledger, Terms())
    assert answer(ledger, minted.token) == ("valid", "")
    # The first policy, applied again (as a catch-up meets a process's own events), is older
    first: Any = next(e for e in ledger.events.get(POLICY_ID))
    ledger.projection.apply(first)
    assert ledger.index.policy_version == 2
    assert answer(ledger, minted.token) == ("valid", "")


def test_blocking_follows_the_lifetime_not_the_time_left() -> None:
    clock = FakeClock(datetime(2027, 1, 1, tzinfo=UTC).timestamp())
    ledger = KeyLedger({"PERSISTENCE_MODULE": "eventsourcing.popo"}, clock=clock)
    minted = mint(ledger, days=31)
    clock.advance(30 * DAY)
    # One day left, but it was minted to live 31: a 30-day policy blocks it
    set_policy(ledger, Terms(max_lifetime_days=30))
    assert ledger.verify(minted.token).code == "invalid_token"
    set_policy(ledger, Terms(max_lifetime_days=31))
    assert ledger.verify(minted.token).code == "valid"
