"""A model-based property test: the ledger, driven at random, always agrees with a plain model —
minting, re-scoping, revoking, expiring, rotating with a grace, suspending and resuming, under a
lifetime policy that tightens and relaxes."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    rule,
)

from domain import token
from domain.errors import InvalidInput, KeyAlreadyRotated, KeyNotActive
from domain.lifetime_policy import NO_POLICY, Terms
from domain.scopes import SCOPES
from ledger.key_ledger import KeyLedger
from tests.conftest import FakeClock

DAY = 86_400.0
scope_sets = st.lists(st.sampled_from(list(SCOPES)), min_size=1, max_size=6, unique=True)


@dataclass
class ModelKey:
    token: str
    owner: str
    scopes: set[str]
    minted_at: float
    expires_at: float | None
    revoked: bool = False
    expired_recorded: bool = False
    suspended: bool = False
    retires_at: float | None = None
    successor: str | None = None
    events: list[str] = field(default_factory=lambda: ["Minted"])

    def ended(self, now: float) -> str | None:
        """Revoked, expired or rotated (for good), or None."""
        if self.revoked:
            return "revoked"
        if self.expired_recorded or (self.expires_at is not None and now >= self.expires_at):
            return "expired"
        if self.retires_at is not None and now >= self.retires_at:
            return "rotated"
        return None

    def status(self, now: float, terms: Terms) -> str:
        lifetime = None if self.expires_at is None else self.expires_at - self.minted_at
        blocked = (
            terms.expiry_required or terms.max_lifetime_days is not None
            if lifetime is None
            else terms.max_lifetime_days is not None
            and lifetime > terms.max_lifetime_days * DAY + 1
        )
        return (
            self.ended(now)
            or ("suspended" if self.suspended else None)
            or ("blocked" if blocked else "active")
        )

    def expected(self, required: list[str], now: float, terms: Terms) -> str:
        if self.status(now, terms) != "active":
            return "invalid_token"
        return "valid" if set(required) <= self.scopes else "insufficient_scope"


class LedgerMachine(RuleBasedStateMachine):
    keys = Bundle("keys")

    @initialize()
    def start(self) -> None:
        self.clock = FakeClock()
        self.ledger = KeyLedger({"PERSISTENCE_MODULE": "eventsourcing.popo"}, clock=self.clock)
        self.model: dict[str, ModelKey] = {}
        self.terms = NO_POLICY

    def teardown(self) -> None:
        if hasattr(self, "ledger"):
            self.ledger.close()

    @rule(
        target=keys,
        owner=st.sampled_from(["alice", "bob"]),
        scopes=scope_sets,
        days=st.none() | st.integers(min_value=1, max_value=5),
    )
    def mint(self, owner: str, scopes: list[str], days: int | None) -> str:
        if self.terms.refusal(days) is not None:
            with pytest.raises(InvalidInput):
                self.ledger.mint(
                    owner_id=owner, name="k", scopes=scopes, expires_in_days=days, actor="user:x"
                )
            days = self.terms.max_lifetime_days or 1
        minted = self.ledger.mint(
            owner_id=owner, name="k", scopes=scopes, expires_in_days=days, actor=f"user:{owner}"
        )
        key_id = str(minted.record.key_id)
        expires_at = None if days is None else self.clock.now + days * DAY
        self.model[key_id] = ModelKey(minted.token, owner, set(scopes), self.clock.now, expires_at)
        return key_id

    @rule(target=keys, key_id=keys, grace=st.sampled_from([0, 60, int(DAY)]))
    def rotate(self, key_id: str, grace: int) -> str:
        key, now = self.model[key_id], self.clock.now
        ended = key.ended(now)
        days = None
        if key.expires_at is not None:
            days = max(1, math.ceil((key.expires_at - key.minted_at) / DAY - 1e-9))
        if self.terms.max_lifetime_days is not None:
            days = min(days or self.terms.max_lifetime_days, self.terms.max_lifetime_days)
        refused: type[Exception] | None = None
        if ended is not None or key.suspended:
            refused = KeyNotActive
        elif self.terms.refusal(days) is not None:
            refused = InvalidInput
        elif key.successor is not None:
            refused = KeyAlreadyRotated
        if refused is not None:
            with pytest.raises(refused):
                self.ledger.rotate(
                    self.ledger.key(key_id).key_id, actor="user:x", grace_seconds=grace
                )
            return key_id
        rotated = self.ledger.rotate(
            self.ledger.key(key_id).key_id, actor="user:x", grace_seconds=grace
        )
        successor_id = str(rotated.record.key_id)
        key.successor = successor_id
        key.retires_at = now + grace
        if key.expires_at is not None:
            key.retires_at = min(key.retires_at, key.expires_at)
        key.events.append("Rotated")
        self.model[successor_id] = ModelKey(
            rotated.token,
            key.owner,
            set(key.scopes),
            now,
            None if days is None else now + days * DAY,
        )
        return successor_id

    @rule(key_id=keys)
    def suspend(self, key_id: str) -> None:
        key = self.model[key_id]
        uuid = self.ledger.key(key_id).key_id
        if key.ended(self.clock.now) is not None:
            with pytest.raises(KeyNotActive):
                self.ledger.suspend(uuid, actor="user:x")
            return
        self.ledger.suspend(uuid, actor="user:x")
        if not key.suspended:
            key.suspended = True
            key.events.append("Suspended")

    @rule(key_id=keys)
    def resume(self, key_id: str) -> None:
        key = self.model[key_id]
        uuid = self.ledger.key(key_id).key_id
        if key.ended(self.clock.now) is not None:
            with pytest.raises(KeyNotActive):
                self.ledger.resume(uuid, actor="user:x")
            return
        self.ledger.resume(uuid, actor="user:x")
        if key.suspended:
            key.suspended = False
            key.events.append("Resumed")

    @rule(
        max_days=st.none() | st.integers(min_value=1, max_value=4),
        required=st.booleans(),
    )
    def set_policy(self, max_days: int | None, required: bool) -> None:
        self.terms = Terms(max_lifetime_days=max_days, expiry_required=required)
        self.ledger.set_lifetime_policy(self.terms, actor="operator:test")

    @rule(key_id=keys, scopes=scope_sets)
    def set_scopes(self, key_id: str, scopes: list[str]) -> None:
        key = self.model[key_id]
        if key.ended(self.clock.now) is not None:
            with pytest.raises(KeyNotActive):
                self.ledger.set_scopes(key_id, scopes, actor="user:x")
            return
        self.ledger.set_scopes(key_id, scopes, actor="user:x")
        if set(scopes) != key.scopes:
            key.events.append("ScopesSet")
        key.scopes = set(scopes)

    @rule(key_id=keys)
    def revoke(self, key_id: str) -> None:
        key = self.model[key_id]
        self.ledger.revoke(key_id, actor="user:x")
        if not key.revoked and not key.expired_recorded:
            key.revoked = True
            key.events.append("Revoked")

    # Whole seconds: the ledger keeps instants to the microsecond, and a float clock would make
    # the model and the ledger disagree in the last bit rather than in any rule.
    @rule(seconds=st.integers(min_value=1, max_value=3 * int(DAY)))
    def advance_clock(self, seconds: int) -> None:
        self.clock.advance(seconds)

    @rule()
    def expire(self) -> None:
        for key_id in self.ledger.due_for_expiry():
            assert self.ledger.expire(key_id)
            key = self.model[str(key_id)]
            key.expired_recorded = True
            key.events.append("Expired")

    @rule(key_id=keys, required=st.lists(st.sampled_from(list(SCOPES)), max_size=3, unique=True))
    def verify(self, key_id: str, required: list[str]) -> None:
        key = self.model[key_id]
        assert self.ledger.verify(key.token, required).code == key.expected(
            required, self.clock.now, self.terms
        )

    @rule()
    def verify_a_stranger(self) -> None:
        assert self.ledger.verify(token.generate(), []).code == "invalid_token"

    @rule()
    def restart(self) -> None:
        rebuilt = KeyLedger(clock=self.clock, beside=self.ledger)
        rebuilt.catch_up()
        assert rebuilt.index.fields() == self.ledger.index.fields()
        self.ledger = rebuilt

    @rule(key_id=consumes(keys))
    def read_history(self, key_id: str) -> None:
        names = [type(e).__name__ for e in self.ledger.history(key_id)]
        assert names == self.model[key_id].events

    @invariant()
    def verification_agrees_with_the_model(self) -> None:
        if not hasattr(self, "model"):
            return
        now = self.clock.now
        for key_id, key in self.model.items():
            for required in ([], ["books:read"], sorted(key.scopes)):
                got = self.ledger.verify(key.token, required).code
                assert got == key.expected(required, now, self.terms), (key_id, required)
            assert self.ledger.status(self.ledger.key(key_id)) == key.status(now, self.terms)

    @invariant()
    def a_rebuilt_index_equals_the_live_one(self) -> None:
        if not hasattr(self, "store"):
            return
        rebuilt = KeyLedger(clock=self.clock, beside=self.ledger)
        rebuilt.catch_up()
        assert rebuilt.index.fields() == self.ledger.index.fields()


LedgerMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)
TestLedgerMachine = LedgerMachine.TestCase
