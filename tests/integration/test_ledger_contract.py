"""One contract, three event stores: memory, SQLite and PostgreSQL must behave the same."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from uuid import UUID

import pytest

from domain.errors import InvalidInput, KeyNotActive, KeyNotFound
from domain.lifetime_policy import Terms
from infra.backends import backend_for
from infra.backends.memory import MemoryBackend
from infra.follower import IndexFollower
from ledger.key_ledger import KeyLedger
from tests.conftest import FakeClock, settings_for

DAY = 86_400.0
LedgerFactory = Callable[[], KeyLedger]


class LedgerContract:
    """Every backend passes these; subclasses provide `database_url`."""

    @pytest.fixture
    def database_url(self) -> str:
        raise NotImplementedError

    @pytest.fixture
    def open_ledger(self, database_url: str, clock: FakeClock) -> Iterator[LedgerFactory]:
        """Opens a ledger process on the backend: a new store connection and a caught-up index."""
        opened: list[tuple[KeyLedger, IndexFollower]] = []
        backend = backend_for(settings_for(database_url))

        def open_one() -> KeyLedger:
            if not backend.shared and opened:
                # In memory, a "restart" can only mean a new index over the same store.
                ledger = KeyLedger(clock=clock, beside=opened[0][0])
            else:
                ledger = KeyLedger(backend.store_env(), clock=clock)
            # A follower that does not follow: the tests drive catch-up themselves.
            follower = IndexFollower(ledger, MemoryBackend())
            follower.start()
            opened.append((ledger, follower))
            return ledger

        yield open_one
        for ledger, follower in opened:
            follower.stop()
            ledger.close()

    def test_a_key_lives_its_whole_life(self, open_ledger: LedgerFactory, clock: FakeClock) -> None:
        ledger = open_ledger()
        # Mint a key with one scope
        minted = ledger.mint(
            owner_id="u1",
            name="CI deploy",
            scopes=["books:read"],
            expires_in_days=None,
            actor="user:u1",
        )
        key_id = minted.record.key_id
        assert minted.token.startswith("ant_live_") and len(minted.token) == 59
        assert minted.record.prefix == minted.token[:12]
        # It verifies for its scope and not for another
        assert ledger.verify(minted.token, ["books:read"]).code == "valid"
        assert ledger.verify(minted.token, ["publish:write"]).code == "insufficient_scope"
        # Widen its scopes
        ledger.set_scopes(key_id, ["books:read", "publish:write"], actor="user:u1")
        assert ledger.verify(minted.token, ["publish:write"]).code == "valid"
        # Revoke it, twice: the second changes nothing
        ledger.revoke(key_id, actor="user:u1", reason="rotated")
        ledger.revoke(key_id, actor="user:u1")
        assert ledger.verify(minted.token, ["books:read"]).code == "invalid_token"
        # It cannot be changed any more
        with pytest.raises(KeyNotActive):
            ledger.set_scopes(key_id, ["books:read"], actor="user:u1")
        # Its history holds every event once, in order
        events = ledger.history(key_id)
        assert [type(e).__name__ for e in events] == ["Minted", "ScopesSet", "Revoked"]
        assert events[1].previous_scopes == ["books:read"]  # type: ignore[attr-defined]
        # A second process sees the same
        other = open_ledger()
        assert other.verify(minted.token, ["books:read"]).code == "invalid_token"
        assert other.index.fields() == ledger.index.fields()

    def test_expiry_holds_on_every_verification_and_is_recorded_once(
        self, open_ledger: LedgerFactory, clock: FakeClock
    ) -> None:
        ledger = open_ledger()
        minted = ledger.mint(
            owner_id="u1", name="short", scopes=["account:read"], expires_in_days=1, actor="user:u1"
        )
        assert ledger.verify(minted.token, ["account:read"]).valid
        # A day later it no longer verifies, before any sweeper runs
        clock.advance(DAY)
        assert ledger.verify(minted.token, ["account:read"]).code == "invalid_token"
        assert ledger.status(minted.record) == "expired"
        # Two processes sweep; Expired is recorded once
        other = open_ledger()
        assert ledger.due_for_expiry() == [minted.record.key_id]
        assert ledger.expire(minted.record.key_id) is True
        assert other.expire(minted.record.key_id) is False
        assert [type(e).__name__ for e in ledger.history(minted.record.key_id)] == [
            "Minted",
            "Expired",
        ]
        with pytest.raises(KeyNotActive):
            ledger.set_scopes(minted.record.key_id, ["books:read"], actor="user:u1")

    def test_an_owner_sees_only_their_keys(self, open_ledger: LedgerFactory) -> None:
        ledger = open_ledger()
        mine = ledger.mint(
            owner_id="u1", name="a", scopes=["books:read"], expires_in_days=None, actor="user:u1"
        )
        ledger.mint(
            owner_id="u2", name="b", scopes=["books:read"], expires_in_days=None, actor="user:u2"
        )
        assert [r.key_id for r in ledger.keys_of("u1")] == [mine.record.key_id]
        with pytest.raises(KeyNotFound):
            ledger.key(mine.record.key_id, owner_id="u2")
        with pytest.raises(KeyNotFound):
            ledger.revoke(mine.record.key_id, actor="user:u2", owner_id="u2")
        with pytest.raises(KeyNotFound):
            ledger.history(mine.record.key_id, owner_id="u2")
        with pytest.raises(KeyNotFound):
            ledger.key("not-a-uuid")

    def test_bad_input_names_the_field_and_records_nothing(
        self, open_ledger: LedgerFactory
    ) -> None:
        ledger = open_ledger()
        cases = [
            ({"name": " ", "scopes": ["books:read"], "expires_in_days": None}, "name"),
            ({"name": "x", "scopes": [], "expires_in_days": None}, "scopes"),
            ({"name": "x", "scopes": ["admin"], "expires_in_days": None}, "scopes"),
            ({"name": "x", "scopes": ["books:read"], "expires_in_days": 0}, "expires_in_days"),
            ({"name": "x", "scopes": ["books:read"], "expires_in_days": 3651}, "expires_in_days"),
        ]
        for kwargs, field in cases:
            with pytest.raises(InvalidInput) as raised:
                ledger.mint(owner_id="u1", actor="user:u1", **kwargs)  # type: ignore[arg-type]
            assert raised.value.field == field
        assert ledger.recorder.max_notification_id() in (None, 0)

    def test_a_process_sees_another_process_revoke_after_catching_up(
        self, open_ledger: LedgerFactory
    ) -> None:
        a, b = open_ledger(), open_ledger()
        minted = a.mint(
            owner_id="u1", name="k", scopes=["books:read"], expires_in_days=None, actor="user:u1"
        )
        b.catch_up()
        assert b.verify(minted.token, ["books:read"]).valid
        a.revoke(minted.record.key_id, actor="user:u1")
        b.catch_up()
        assert b.verify(minted.token, ["books:read"]).code == "invalid_token"

    def test_a_rotation_holds_in_every_process_after_its_grace(
        self, open_ledger: LedgerFactory, clock: FakeClock
    ) -> None:
        a, b = open_ledger(), open_ledger()
        old = a.mint(
            owner_id="u1", name="ci", scopes=["books:read"], expires_in_days=30, actor="user:u1"
        )
        rotated = a.rotate(old.record.key_id, actor="user:u1", grace_seconds=600)
        b.catch_up()
        for process in (a, b):
            assert process.verify(old.token).valid and process.verify(rotated.token).valid
        clock.advance(600)
        for process in (a, b):
            assert process.verify(old.token).code == "invalid_token"
            assert process.verify(rotated.token, ["books:read"]).valid
            assert process.status(process.key(old.record.key_id)) == "rotated"
        assert [type(e).__name__ for e in b.history(old.record.key_id)] == ["Minted", "Rotated"]
        successor = b.history(rotated.record.key_id)[0]
        assert successor.predecessor_id == old.record.key_id  # type: ignore[attr-defined]
        # A restarted process (index rebuilt from the store, or warm from key states) agrees
        c = open_ledger()
        c.catch_up()
        assert c.verify(old.token).code == "invalid_token" and c.verify(rotated.token).valid

    def test_suspension_and_the_policy_hold_in_every_process(
        self, open_ledger: LedgerFactory
    ) -> None:
        a, b = open_ledger(), open_ledger()
        year = a.mint(
            owner_id="u1", name="y", scopes=["books:read"], expires_in_days=365, actor="user:u1"
        )
        month = a.mint(
            owner_id="u1", name="m", scopes=["books:read"], expires_in_days=30, actor="user:u1"
        )
        a.suspend(month.record.key_id, actor="user:u1", reason="laptop lost")
        b.catch_up()
        assert b.verify(month.token).code == "invalid_token"
        assert b.status(b.key(month.record.key_id)) == "suspended"
        a.set_lifetime_policy(Terms(max_lifetime_days=90), actor="operator:ops")
        b.catch_up()
        assert b.verify(year.token).code == "invalid_token"
        assert b.status(b.key(year.record.key_id)) == "blocked"
        with pytest.raises(InvalidInput) as refused:
            b.mint(owner_id="u1", name="n", scopes=["books:read"], expires_in_days=91, actor="u")
        assert refused.value.field == "expires_in_days"
        a.resume(month.record.key_id, actor="user:u1")
        a.set_lifetime_policy(Terms(), actor="operator:ops")
        b.catch_up()
        assert b.verify(year.token).valid and b.verify(month.token).valid
        c = open_ledger()
        c.catch_up()
        assert c.verify(year.token).valid and c.verify(month.token).valid
        assert [type(e).__name__ for e in c.history(year.record.key_id)] == ["Minted"]

    def test_a_process_decides_on_what_it_remembers_only_as_the_store_confirms(
        self, open_ledger: LedgerFactory
    ) -> None:
        """A process remembers the keys it saved and decides its next command on one without
        reading the store; another process may have changed the key meanwhile (it has not
        caught up here), so every decision still ends as the store's latest state dictates."""
        a, b = open_ledger(), open_ledger()

        def mint(name: str) -> UUID:
            minted = a.mint(
                owner_id="u1", name=name, scopes=["books:read"], expires_in_days=30, actor="u"
            )
            return minted.record.key_id

        revoked, suspended, resumed, rotated = mint("r"), mint("s"), mint("re"), mint("ro")
        a.suspend(resumed, actor="u")
        a.suspend(rotated, actor="u")
        # Each time, another process changes a key and `a` acts on it before it learns of that
        # (a save of its own catches `a` up on everything before it)
        b.revoke(revoked, actor="u", reason="by b")
        # A change on a key that changed meanwhile is decided again: revoked once, by b
        assert a.status(a.revoke(revoked, actor="u", reason="by a")) == "revoked"
        assert [type(e).__name__ for e in a.history(revoked)] == ["Minted", "Revoked"]
        assert a.history(revoked)[-1].reason == "by b"  # type: ignore[attr-defined]
        b.suspend(suspended, actor="u")
        # "Nothing to change" on what `a` remembers is not the answer: the store says resume
        a.resume(suspended, actor="u")
        assert [type(e).__name__ for e in a.history(suspended)][-2:] == ["Suspended", "Resumed"]
        b.resume(rotated, actor="u")
        # Neither is a refusal: `a` remembers the key suspended, but it may be rotated now
        successor = a.rotate(rotated, actor="u")
        assert successor.predecessor_id == rotated
        b.resume(resumed, actor="u")
        # The same command again, where the store agrees, changes nothing more
        a.suspend(resumed, actor="u")
        a.suspend(resumed, actor="u")
        assert [type(e).__name__ for e in a.history(resumed)] == [
            "Minted",
            "Suspended",
            "Resumed",
            "Suspended",
        ]
        for process in (a, b):
            process.catch_up()
            assert process.status(process.key(revoked)) == "revoked"
            assert process.status(process.key(suspended)) == "active"
            assert process.status(process.key(resumed)) == "suspended"
            assert process.status(process.key(rotated)) == "rotated"


class TestMemory(LedgerContract):
    @pytest.fixture
    def database_url(self) -> str:
        return "memory:"


class TestSQLite(LedgerContract):
    @pytest.fixture
    def database_url(self, sqlite_url: str) -> str:
        return sqlite_url


@pytest.mark.postgres
class TestPostgres(LedgerContract):
    @pytest.fixture
    def database_url(self, postgres_url: str) -> str:
        return postgres_url
