"""The verification index: what it holds of a key, and what it answers for any string."""

from __future__ import annotations

import gc

import pytest

from domain import token as token_format
from ledger.key_ledger import KeyLedger
from projections.verification_index.index import INVALID, KeyRecord
from tests.conftest import FakeClock


@pytest.fixture
def ledger(clock: FakeClock) -> KeyLedger:
    return KeyLedger({"PERSISTENCE_MODULE": "eventsourcing.popo"}, clock=clock)


def test_a_live_keys_answer_is_its_record_with_only_what_verifying_needs(
    ledger: KeyLedger,
) -> None:
    minted = ledger.mint(
        owner_id="u1", name="ci", scopes=["books:read"], expires_in_days=30, actor="user:u1"
    )
    answer = ledger.verify(minted.token, ["books:read"])
    # Valid: the record itself, naming the key, its owner, scopes and expiry
    assert isinstance(answer, KeyRecord)
    assert (answer.valid, answer.code, answer.missing, answer.description) == (
        True,
        "valid",
        (),
        "",
    )
    assert answer.record is answer
    assert answer.key_id == minted.record.key_id
    assert answer.owner_id == "u1"
    assert answer.scopes == {"books:read"}
    assert answer.expires_at == minted.record.expires_at
    # No name, prefix or instants: the key states hold those
    assert not hasattr(answer, "name") and not hasattr(answer, "prefix")
    # The collector never walks a million of them
    assert not gc.is_tracked(answer)
    # A missing scope names the record and what is missing
    lacking = ledger.verify(minted.token, ["books:read", "publish:write"])
    assert (lacking.code, lacking.record, lacking.missing) == (
        "insufficient_scope",
        answer,
        ("publish:write",),
    )


def test_records_share_owner_ids_scope_sets_and_lifetimes(ledger: KeyLedger) -> None:
    tokens = [
        ledger.mint(
            owner_id="".join(["u", "1"]),
            name=f"k{i}",
            scopes=["books:read", "account:read"],
            expires_in_days=30,
            actor="user:u1",
        ).token
        for i in range(3)
    ]
    records = [ledger.verify(t) for t in tokens]
    assert len({id(r.record.owner_id) for r in records if r.record}) == 1
    assert len({id(r.record.scopes) for r in records if r.record}) == 1
    assert len({id(r.record.lifetime) for r in records if r.record}) == 1


@pytest.mark.parametrize(
    "candidate",
    [
        "",
        "not-a-token",
        "ant_live_" + "A" * 50,  # the right length and alphabet, a wrong checksum
        "ant_live_" + "é" * 50,
        "ant_live_\ud800",  # a lone surrogate: no bytes at all
        "ant_live_" + "A" * 100_000,
    ],
)
def test_any_string_no_key_has_is_refused_alike_without_checking_its_form(
    ledger: KeyLedger, candidate: str
) -> None:
    unknown = ledger.verify(token_format.generate())
    assert unknown is INVALID
    assert ledger.verify(candidate, ["books:read"]) is INVALID
    assert ledger.index.holder(candidate) is None
