"""The expiry sweeper records Expired once per key, however many processes sweep."""

from __future__ import annotations

from infra.backends import backend_for
from infra.sweeper import ExpirySweeper
from ledger.key_ledger import KeyLedger
from tests.conftest import FakeClock, settings_for


def test_two_sweepers_record_expired_once(sqlite_url: str, clock: FakeClock) -> None:
    backend = backend_for(settings_for(sqlite_url))
    stores = [KeyLedger(backend.store_env(), clock=clock) for _ in range(2)]
    try:
        a, b = stores
        minted = a.mint(
            owner_id="u1", name="k", scopes=["books:read"], expires_in_days=1, actor="user:u1"
        )
        keeps = a.mint(
            owner_id="u1", name="k", scopes=["books:read"], expires_in_days=None, actor="user:u1"
        )
        b.catch_up()
        # Before the instant, nothing to sweep
        assert ExpirySweeper(a).sweep() == 0
        clock.advance(86_400)
        # Both sweep; one records it, the other finds it done
        assert ExpirySweeper(a).sweep() + ExpirySweeper(b).sweep() == 1
        b.catch_up()
        names = [type(e).__name__ for e in b.history(minted.record.key_id)]
        assert names == ["Minted", "Expired"]
        assert [type(e).__name__ for e in b.history(keeps.record.key_id)] == ["Minted"]
        assert ExpirySweeper(b).sweep() == 0
    finally:
        for store in stores:
            store.close()
