"""One audit contract, three backends: memory, SQLite and PostgreSQL keep the same trail."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC
from urllib.parse import parse_qs, urlsplit
from uuid import UUID

import msgspec
import psycopg
import pytest
from psycopg.sql import SQL, Identifier

from domain.actors import key_itself, operator, user
from infra.backends import backend_for
from ledger.key_ledger import KeyLedger
from projections.audit_trail.chain import GENESIS, link
from projections.audit_trail.check import check_chain
from projections.audit_trail.projection import AuditProjector
from projections.audit_trail.view import AuditQuery, AuditRow, AuditTrailBroken, AuditView
from tests.conftest import POSTGRES_URL, FakeClock, settings_for

MINUTE = 60.0
CONTEXT = {"request_id": "req-1", "ip": "203.0.113.7", "user_agent": "curl/8"}


@dataclass
class Process:
    """One ledger process: its ledger (which is its store connection), audit view and projector."""

    store: KeyLedger
    ledger: KeyLedger
    view: AuditView
    projector: AuditProjector

    def all_rows(self) -> list[AuditRow]:
        return self.view.rows_after(0, 10_000)


Opener = Callable[[], Process]


class AuditContract:
    """Every backend passes these; subclasses provide `database_url`."""

    @pytest.fixture
    def database_url(self) -> str:
        raise NotImplementedError

    @pytest.fixture
    def open_process(self, database_url: str, clock: FakeClock) -> Iterator[Opener]:
        """Opens a process on the backend; in memory, every process shares the one store."""
        ledgers: list[KeyLedger] = []
        backend = backend_for(settings_for(database_url))

        def open_one() -> Process:
            if not backend.shared and ledgers:
                ledger = KeyLedger(clock=clock, beside=ledgers[0])
            else:
                ledger = KeyLedger(backend.store_env(), clock=clock)
            ledgers.append(ledger)
            view = backend.audit_view(ledger)
            projector = AuditProjector(ledger.recorder, ledger.mapper, ledger.name, view)
            return Process(ledger, ledger, view, projector)

        yield open_one
        for ledger in ledgers:
            ledger.close()

    @staticmethod
    def history(p: Process, clock: FakeClock) -> dict[str, UUID]:
        """Two owners' keys through their lives, a minute apart; returns the key ids by name."""

        def mint(owner: str, name: str) -> UUID:
            clock.advance(MINUTE)
            minted = p.ledger.mint(
                owner_id=owner,
                name=name,
                scopes=["books:read"],
                expires_in_days=30,
                actor=user(owner),
                context=CONTEXT,
            )
            return minted.record.key_id

        keys = {"a": mint("u1", "a"), "b": mint("u1", "b"), "c": mint("u2", "c")}
        clock.advance(MINUTE)
        p.ledger.set_scopes(keys["a"], ["books:read", "books:write"], actor=user("u1"))
        clock.advance(MINUTE)
        p.ledger.revoke(keys["b"], actor=key_itself(keys["b"]), reason="leaked")
        clock.advance(MINUTE)
        p.ledger.revoke(keys["c"], actor=operator("alice"), reason="offboarding")
        clock.advance(MINUTE)
        p.ledger.set_scopes(keys["a"], ["account:read"], actor=user("u1"), context=CONTEXT)
        return keys

    def test_every_stored_event_has_one_row_in_store_order_and_no_token(
        self, open_process: Opener, clock: FakeClock
    ) -> None:
        p = open_process()
        # Mint a key and keep its token
        minted = p.ledger.mint(
            owner_id="u1",
            name="CI deploy",
            scopes=["books:read"],
            expires_in_days=None,
            actor=user("u1"),
            context=CONTEXT,
        )
        keys = self.history(p, clock)
        # A key of u2 expires and the sweeper records it
        short = p.ledger.mint(
            owner_id="u2", name="short", scopes=["books:read"], expires_in_days=1, actor=user("u2")
        )
        clock.advance(86_400)
        assert p.ledger.expire(short.record.key_id)
        # Project the store
        notifications = p.store.recorder.select_notifications(start=None, limit=100)
        assert p.projector.catch_up() == len(notifications) == 10
        rows = p.all_rows()
        # One row per event, at its notification id, in order
        assert [r.position for r in rows] == [n.id for n in notifications]
        assert [r.key_id for r in rows] == [n.originator_id for n in notifications]
        assert [(r.type, r.owner_id, r.actor) for r in rows] == [
            ("Minted", "u1", "user:u1"),
            ("Minted", "u1", "user:u1"),
            ("Minted", "u1", "user:u1"),
            ("Minted", "u2", "user:u2"),
            ("ScopesSet", "u1", "user:u1"),
            ("Revoked", "u1", f"key:{keys['b']}"),
            ("Revoked", "u2", "operator:alice"),
            ("ScopesSet", "u1", "user:u1"),
            ("Minted", "u2", "user:u2"),
            ("Expired", "u2", "system"),
        ]
        # Each row carries the event's own fields, its context and version
        first = rows[0]
        assert first.event == {
            "name": "CI deploy",
            "prefix": minted.record.prefix,
            "scopes": ["books:read"],
            "expires_at": None,
            "context": CONTEXT,
            "version": 1,
        }
        assert first.at == minted.record.created_at
        scopes_set = [r for r in rows if r.type == "ScopesSet"]
        assert scopes_set[0].event == {
            "scopes": ["books:read", "books:write"],
            "previous_scopes": ["books:read"],
            "context": None,
            "version": 2,
        }
        assert scopes_set[1].event["context"] == CONTEXT
        revoked = [r for r in rows if r.type == "Revoked"]
        assert [r.event["reason"] for r in revoked] == ["leaked", "offboarding"]
        assert rows[-1].event == {
            "expires_at": msgspec.to_builtins(short.record.expires_at),
            "context": None,
            "version": 2,
        }
        # No part of any token, nor its digest, reaches the trail
        digest = p.store.mapper.to_domain_event(notifications[0]).token_sha256  # type: ignore[attr-defined]
        encoded = msgspec.json.encode(rows).decode()
        assert "token_sha256" not in encoded
        assert digest not in encoded
        assert minted.token not in encoded and minted.token[12:] not in encoded
        # Each row's chain is the sha256 of the one before and the stored event's bytes
        previous = [GENESIS, *(r.chain for r in rows)]
        assert [r.chain for r in rows] == [
            link(before, n) for before, n in zip(previous, notifications, strict=False)
        ]
        assert p.view.head() == (rows[-1].position, rows[-1].chain)

    def test_queries_by_owner_key_type_and_time(
        self, open_process: Opener, clock: FakeClock
    ) -> None:
        p = open_process()
        keys = self.history(p, clock)
        p.projector.catch_up()
        rows = p.all_rows()
        u1 = [r for r in rows if r.owner_id == "u1"]
        # An owner reads their own history, newest first by default
        assert p.view.query(AuditQuery(owner_id="u1")) == u1[::-1]
        assert p.view.query(AuditQuery(owner_id="u1", newest_first=False)) == u1
        assert p.view.query(AuditQuery(owner_id="nobody")) == []
        # An operator reads every owner's
        assert p.view.query(AuditQuery(newest_first=False)) == rows
        # One key
        a_rows = [r for r in rows if r.key_id == keys["a"]]
        assert [r.type for r in a_rows] == ["Minted", "ScopesSet", "ScopesSet"]
        assert p.view.query(AuditQuery(owner_id="u1", key_id=keys["a"])) == a_rows[::-1]
        assert p.view.query(AuditQuery(key_id=keys["a"], newest_first=False)) == a_rows
        # Another owner's key shows nothing
        assert p.view.query(AuditQuery(owner_id="u2", key_id=keys["a"])) == []
        # By type
        revoked = p.view.query(AuditQuery(types=("Revoked",), newest_first=False))
        assert [(r.owner_id, r.key_id) for r in revoked] == [
            ("u1", keys["b"]),
            ("u2", keys["c"]),
        ]
        both = p.view.query(AuditQuery(owner_id="u1", types=("Minted", "Revoked")))
        assert [r.type for r in both] == ["Revoked", "Minted", "Minted"]
        # Since is inclusive, until exclusive, on the event's own time
        since, until = rows[1].at, rows[4].at
        window = p.view.query(AuditQuery(since=since, until=until, newest_first=False))
        assert window == rows[1:4]
        naive = since.astimezone(UTC).replace(tzinfo=None)
        assert p.view.query(AuditQuery(since=naive, until=until, newest_first=False)) == window
        assert p.view.query(AuditQuery(owner_id="u2", since=until)) == [
            r for r in rows[::-1] if r.owner_id == "u2" and r.at >= until
        ]
        # A limit takes the first rows in the chosen order
        assert p.view.query(AuditQuery(limit=2)) == rows[::-1][:2]
        # The owner of a key, as the trail records it
        assert p.view.owner_of(keys["c"]) == "u2"
        assert p.view.owner_of(UUID(int=0)) is None

    def test_cursor_pages_return_every_row_once_while_events_are_appended(
        self, open_process: Opener, clock: FakeClock
    ) -> None:
        p = open_process()
        self.history(p, clock)
        p.projector.catch_up()
        before = [r.position for r in p.all_rows() if r.owner_id == "u1"]
        # Page newest first, two at a time, minting between pages
        seen: list[int] = []
        cursor: int | None = None
        minted = 0
        while True:
            page = p.view.query(AuditQuery(owner_id="u1", cursor=cursor, limit=2))
            seen += [r.position for r in page]
            if len(page) < 2:
                break
            cursor = page[-1].position
            p.ledger.mint(
                owner_id="u1", name="new", scopes=["books:read"], expires_in_days=None, actor="x"
            )
            minted += 1
            p.projector.catch_up()
        # Every row that existed when paging began, once, in order; new ones are for a new read
        assert minted == 2
        assert seen == before[::-1]
        # Oldest first, paging reaches the rows appended meanwhile too
        seen, cursor = [], 0
        while True:
            page = p.view.query(
                AuditQuery(owner_id="u1", newest_first=False, cursor=cursor, limit=2)
            )
            seen += [r.position for r in page]
            if len(page) < 2:
                break
            cursor = page[-1].position
            if len(seen) == 4:
                p.ledger.revoke(p.all_rows()[0].key_id, actor="user:u1")
                p.projector.catch_up()
        assert seen == [r.position for r in p.all_rows() if r.owner_id == "u1"]
        assert len(seen) == len(set(seen)) == len(before) + minted + 1

    def test_catching_up_is_exactly_once_even_with_two_processes(
        self, open_process: Opener, clock: FakeClock
    ) -> None:
        a, b = open_process(), open_process()
        self.history(a, clock)
        for i in range(20):
            a.ledger.mint(
                owner_id=f"u{i % 3}",
                name=f"k{i}",
                scopes=["books:read"],
                expires_in_days=None,
                actor="user:x",
            )
        total = len(a.store.recorder.select_notifications(start=None, limit=1000))
        # Both processes catch up at once, in small batches, racing for every position
        written: list[int] = []
        start = threading.Barrier(2)

        def run(p: Process) -> None:
            start.wait()
            written.append(p.projector.catch_up(batch=2))

        threads = [threading.Thread(target=run, args=(p,)) for p in (a, b)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        # Each position was written once, by one of them
        assert sum(written) == total
        positions = [r.position for r in b.all_rows()]
        assert positions == [
            n.id for n in a.store.recorder.select_notifications(start=None, limit=1000)
        ]
        assert check_chain(a.store.recorder, b.view).ok
        # Catching up again writes nothing, in either process
        assert a.projector.catch_up() == b.projector.catch_up() == 0
        # New events go to whichever process catches up first, once
        a.ledger.mint(
            owner_id="u1", name="late", scopes=["books:read"], expires_in_days=None, actor="x"
        )
        assert b.projector.catch_up() == 1
        assert a.projector.catch_up() == 0
        assert len(a.all_rows()) == total + 1

    def test_the_chain_verifies_and_its_head_is_the_last_row(
        self, open_process: Opener, clock: FakeClock
    ) -> None:
        p = open_process()
        # An empty trail verifies from the genesis
        empty = check_chain(p.store.recorder, p.view)
        assert (empty.ok, empty.checked, empty.head_position, empty.head_chain) == (
            True,
            0,
            0,
            GENESIS,
        )
        self.history(p, clock)
        p.projector.catch_up(batch=3)
        report = check_chain(p.store.recorder, p.view, batch=2, mapper=p.store.mapper)
        last = p.all_rows()[-1]
        assert report.ok and report.reason == "" and report.first_bad_position is None
        assert report.checked == len(p.all_rows())
        assert (report.head_position, report.head_chain) == (last.position, last.chain)
        assert p.view.head() == (last.position, last.chain)
        # Events the view has not reached yet are not held against it
        p.ledger.mint(
            owner_id="u1", name="new", scopes=["books:read"], expires_in_days=None, actor="x"
        )
        assert check_chain(p.store.recorder, p.view).head_position == last.position
        # Once projected, the chain extends from the same head
        p.projector.catch_up()
        assert check_chain(p.store.recorder, p.view).ok


class TamperContract(AuditContract):
    """For stores an operator can edit behind the service's back: the chain shows it."""

    def edit_stored_event(self, p: Process, position: int, state: bytes) -> None:
        raise NotImplementedError

    def delete_stored_event(self, p: Process, position: int) -> None:
        raise NotImplementedError

    def delete_audit_row(self, p: Process, position: int) -> None:
        raise NotImplementedError

    def edit_audit_actor(self, p: Process, position: int, actor: str) -> None:
        raise NotImplementedError

    def stored_state(self, p: Process, position: int) -> bytes:
        (n,) = p.store.recorder.select_notifications(start=position, limit=1)
        return n.state

    def test_an_edited_stored_event_breaks_the_chain_from_its_position(
        self, open_process: Opener, clock: FakeClock
    ) -> None:
        p = open_process()
        self.history(p, clock)
        p.projector.catch_up()
        revoked = next(r for r in p.all_rows() if r.type == "Revoked")
        original = self.stored_state(p, revoked.position)
        # Someone rewrites who revoked the key, in the event store itself
        self.edit_stored_event(
            p, revoked.position, original.replace(b'"reason":"leaked"', b'"reason":"rotated"')
        )
        assert self.stored_state(p, revoked.position) != original
        report = check_chain(p.store.recorder, p.view)
        assert not report.ok
        assert report.first_bad_position == revoked.position
        assert report.reason == "stored event differs from the audit record"
        assert report.checked == revoked.position - 1
        assert report.head_position == revoked.position - 1
        # Put back, the chain holds again
        self.edit_stored_event(p, revoked.position, original)
        assert check_chain(p.store.recorder, p.view).ok

    def test_a_missing_or_edited_audit_row_is_reported(
        self, open_process: Opener, clock: FakeClock
    ) -> None:
        p = open_process()
        self.history(p, clock)
        p.projector.catch_up()
        rows = p.all_rows()
        # An edited actor in the audit table shows when rows are derived again from the store
        self.edit_audit_actor(p, rows[2].position, "user:someone-else")
        assert check_chain(p.store.recorder, p.view).ok  # the chain alone covers the store
        report = check_chain(p.store.recorder, p.view, mapper=p.store.mapper)
        assert (report.ok, report.first_bad_position) == (False, rows[2].position)
        assert report.reason == "audit record's fields differ from the stored event"
        # A deleted audit row
        self.delete_audit_row(p, rows[4].position)
        report = check_chain(p.store.recorder, p.view)
        assert (report.ok, report.first_bad_position) == (False, rows[4].position)
        assert report.reason == "audit record missing"
        # A deleted stored event
        self.delete_stored_event(p, rows[1].position)
        report = check_chain(p.store.recorder, p.view)
        assert (report.ok, report.first_bad_position) == (False, rows[1].position)
        assert report.reason == "audit record for an event that is not in the store"

    def test_the_projector_will_not_extend_a_chain_whose_last_row_is_gone(
        self, open_process: Opener, clock: FakeClock
    ) -> None:
        p = open_process()
        self.history(p, clock)
        p.projector.catch_up()
        self.delete_audit_row(p, p.all_rows()[-1].position)
        p.ledger.mint(
            owner_id="u1", name="new", scopes=["books:read"], expires_in_days=None, actor="x"
        )
        with pytest.raises(AuditTrailBroken):
            p.projector.catch_up()
        assert check_chain(p.store.recorder, p.view).reason == "audit record missing"


class TestMemory(AuditContract):
    @pytest.fixture
    def database_url(self) -> str:
        return "memory:"


class TestSQLite(TamperContract):
    @pytest.fixture
    def database_url(self, sqlite_url: str) -> str:
        self.path = sqlite_url.removeprefix("sqlite:")
        return sqlite_url

    def _execute(self, statement: str, params: tuple[object, ...]) -> None:
        with sqlite3.connect(self.path) as conn:
            assert conn.execute(statement, params).rowcount == 1

    # The library's SQLite store keeps events in stored_events; a notification id is a rowid.

    def edit_stored_event(self, p: Process, position: int, state: bytes) -> None:
        self._execute("UPDATE stored_events SET state = ? WHERE rowid = ?", (state, position))

    def delete_stored_event(self, p: Process, position: int) -> None:
        self._execute("DELETE FROM stored_events WHERE rowid = ?", (position,))

    def delete_audit_row(self, p: Process, position: int) -> None:
        self._execute("DELETE FROM audit_events WHERE position = ?", (position,))

    def edit_audit_actor(self, p: Process, position: int, actor: str) -> None:
        self._execute("UPDATE audit_events SET actor = ? WHERE position = ?", (actor, position))


@pytest.mark.postgres
class TestPostgres(TamperContract):
    @pytest.fixture
    def database_url(self, postgres_url: str) -> str:
        self.schema = parse_qs(urlsplit(postgres_url).query)["schema"][0]
        return postgres_url

    def _execute(self, statement: str, table: str, params: tuple[object, ...]) -> None:
        query = SQL(statement).format(Identifier(self.schema, table))
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            assert conn.execute(query, params).rowcount == 1

    def edit_stored_event(self, p: Process, position: int, state: bytes) -> None:
        self._execute(
            "UPDATE {} SET state = %s WHERE notification_id = %s",
            "ledger_events",
            (state, position),
        )

    def delete_stored_event(self, p: Process, position: int) -> None:
        self._execute("DELETE FROM {} WHERE notification_id = %s", "ledger_events", (position,))

    def delete_audit_row(self, p: Process, position: int) -> None:
        self._execute("DELETE FROM {} WHERE position = %s", "audit_events", (position,))

    def edit_audit_actor(self, p: Process, position: int, actor: str) -> None:
        self._execute(
            "UPDATE {} SET actor = %s WHERE position = %s", "audit_events", (actor, position)
        )
