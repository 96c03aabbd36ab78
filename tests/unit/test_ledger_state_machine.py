"""A model-based property test: the ledger, driven at random, always agrees with a plain model."""

from __future__ import annotations

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
from domain.errors import KeyNotActive
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
    expires_at: float | None
    revoked: bool = False
    expired_recorded: bool = False
    events: list[str] = field(default_factory=lambda: ["Minted"])

    def active(self, now: float) -> bool:
        if self.revoked or self.expired_recorded:
            return False
        return self.expires_at is None or now < self.expires_at

    def expected(self, required: list[str], now: float) -> str:
        if not self.active(now):
            return "invalid_token"
        return "valid" if set(required) <= self.scopes else "insufficient_scope"


class LedgerMachine(RuleBasedStateMachine):
    keys = Bundle("keys")

    @initialize()
    def start(self) -> None:
        self.clock = FakeClock()
        self.ledger = KeyLedger({"PERSISTENCE_MODULE": "eventsourcing.popo"}, clock=self.clock)
        self.model: dict[str, ModelKey] = {}

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
        minted = self.ledger.mint(
            owner_id=owner, name="k", scopes=scopes, expires_in_days=days, actor=f"user:{owner}"
        )
        key_id = str(minted.record.key_id)
        expires_at = None if days is None else self.clock.now + days * DAY
        self.model[key_id] = ModelKey(minted.token, owner, set(scopes), expires_at)
        return key_id

    @rule(key_id=keys, scopes=scope_sets)
    def set_scopes(self, key_id: str, scopes: list[str]) -> None:
        key = self.model[key_id]
        if not key.active(self.clock.now):
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
            required, self.clock.now
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
                assert got == key.expected(required, now), (key_id, required)
            assert self.ledger.status(self.ledger.key(key_id)) == (
                "revoked" if key.revoked else "active" if key.active(now) else "expired"
            )

    @invariant()
    def a_rebuilt_index_equals_the_live_one(self) -> None:
        if not hasattr(self, "store"):
            return
        rebuilt = KeyLedger(clock=self.clock, beside=self.ledger)
        rebuilt.catch_up()
        assert rebuilt.index.fields() == self.ledger.index.fields()


LedgerMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)
TestLedgerMachine = LedgerMachine.TestCase
