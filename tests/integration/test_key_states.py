"""Key states: a process that starts from the table holds the index a replay builds."""

from __future__ import annotations

import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit
from uuid import UUID, uuid4

import psycopg
import pytest
from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import IntegrityError, OperationalError, Tracking
from psycopg.sql import SQL, Identifier

from domain.api_key import ACTIVE
from domain.errors import InvalidInput, KeyAlreadyRotated, KeyNotActive
from domain.lifetime_policy import POLICY_ID, LifetimePolicy, Terms
from domain.scopes import SCOPES
from infra.backends import backend_for
from infra.warm_start import warm_start
from ledger.key_ledger import KeyLedger
from ledger.key_states import KeyStates
from projections.key_states.view import TABLE, KeyState, index_row, load_rows
from projections.verification_index.index import VerificationIndex
from tests.conftest import POSTGRES_URL, FakeClock, settings_for

HOUR = 3600.0
OWNERS = ("u0", "u1", "u2", "u3")


@dataclass
class Process:
    """One ledger process: its ledger (its store connection, with its index) and key states."""

    store: KeyLedger
    ledger: KeyLedger
    states: KeyStates

    def head(self) -> int:
        return self.store.recorder.max_notification_id() or 0


Opener = Callable[[], Process]


class Life:
    """Random commands on keys, as people and the sweeper issue them, on one process's ledger."""

    def __init__(self, p: Process, clock: FakeClock, seed: int) -> None:
        self.p = p
        self.clock = clock
        self.rng = random.Random(seed)
        self.keys: list[UUID] = []
        self.tokens: list[str] = []

    def scopes(self) -> list[str]:
        return self.rng.sample(list(SCOPES), self.rng.randint(1, 3))

    def step(self) -> None:
        rng, ledger = self.rng, self.p.ledger
        self.clock.advance(rng.uniform(0, 12 * HOUR))
        roll = rng.random()
        # From the index: reading the key states would catch them up as a side effect.
        records, now = [ledger.index.key(k) for k in self.keys], self.clock()
        active = [
            k
            for k, r in zip(self.keys, records, strict=True)
            if r is not None and ledger.index.status(r, now) == ACTIVE
        ]
        if roll < 0.4 or not active:
            try:
                minted = ledger.mint(
                    owner_id=rng.choice(OWNERS),
                    name=f"key {len(self.keys)}",
                    scopes=self.scopes(),
                    expires_in_days=rng.choice([None, None, 1, 2, 30]),
                    actor="user:x",
                )
            except InvalidInput:
                # The lifetime policy in force refuses that expiry.
                return
            self.keys.append(minted.record.key_id)
            self.tokens.append(minted.token)
        elif roll < 0.6:
            ledger.set_scopes(rng.choice(active), self.scopes(), actor="user:x")
        elif roll < 0.72:
            ledger.revoke(rng.choice(self.keys), actor="user:x", reason="rotated")
        elif roll < 0.8:
            grace = timedelta(seconds=rng.choice([0, 3600, 86_400]))
            self.lifecycle(rng.choice(active), "rotate", uuid4(), grace, "user:x", ledger.now())
        elif roll < 0.88:
            key_id = rng.choice(self.keys)
            key: Any = ledger.repository.get(key_id)
            command = "resume" if key.suspended else "suspend"
            self.lifecycle(key_id, command, "user:x", ledger.now())
        elif roll < 0.92:
            self.change_policy()
        else:
            for key_id in ledger.due_for_expiry():
                ledger.expire(key_id)

    def lifecycle(self, key_id: UUID, command: str, *args: Any) -> None:
        """Rotate, suspend or resume a key as the lifecycle's commands do; a key that may not
        is left as it is."""
        key: Any = self.p.ledger.repository.get(key_id)
        try:
            getattr(key, command)(*args)
        except (KeyNotActive, KeyAlreadyRotated):
            return
        self.p.ledger.record(list(key.collect_events()))

    def change_policy(self) -> None:
        """Set the lifetime policy to random terms (none, at most 1 or 30 days, an expiry)."""
        ledger, rng = self.p.ledger, self.rng
        terms = Terms(
            max_lifetime_days=rng.choice([None, 1, 30]), expiry_required=rng.random() < 0.3
        )
        try:
            policy: Any = ledger.repository.get(POLICY_ID)
        except AggregateNotFoundError:
            policy = LifetimePolicy.first(terms, "operator:x", ledger.now())
        else:
            policy.change(terms, "operator:x", ledger.now())
        ledger.record(list(policy.collect_events()))

    def run(self, steps: int) -> None:
        for _ in range(steps):
            self.step()


def replayed_up_to(store: KeyLedger, position: int | None = None) -> KeyLedger:
    """A ledger whose new index is built by replaying the store (up to a position)."""
    ledger = KeyLedger(beside=store)
    if position is None:
        ledger.catch_up()
        return ledger
    for n in store.recorder.select_notifications(start=1, limit=100_000, stop=position):
        event = ledger.mapper.to_domain_event(n)
        ledger.projection.process_event(event, Tracking(ledger.name, n.id))
    return ledger


def same_index(a: KeyLedger, b: KeyLedger) -> bool:
    """The same records and the same policy in force."""
    return a.index.fields() == b.index.fields() and (a.index.terms, a.index.policy_version) == (
        b.index.terms,
        b.index.policy_version,
    )


def answer(ledger: KeyLedger, token: str) -> tuple[object, ...]:
    """What verifying a token for books:read answers, with the record it names."""
    v = ledger.verify(token, ["books:read"])
    return v.code, v.missing, v.description, v.record.fields() if v.record is not None else None


class KeyStatesContract:
    """Every backend with key states passes these; subclasses provide `database_url`."""

    @pytest.fixture
    def database_url(self) -> str:
        raise NotImplementedError

    def stored_rows(self) -> str:
        """Everything in the key states table, as text."""
        raise NotImplementedError

    @pytest.fixture
    def open_process(self, database_url: str, clock: FakeClock) -> Iterator[Opener]:
        stores: list[KeyLedger] = []
        # A pool of one for each of the dozen processes a test opens, not five.
        backend = backend_for(settings_for(database_url, db_pool_size=1, db_pool_max=2))

        def open_one() -> Process:
            ledger = KeyLedger(backend.store_env(), clock=clock)
            stores.append(ledger)
            view = backend.key_states_view(ledger)
            assert view is not None
            return Process(ledger, ledger, ledger.read_states_from(view))

        yield open_one
        for store in stores:
            store.close()

    @pytest.mark.parametrize("seed", [1, 2, 3])
    def test_a_warm_started_index_equals_a_replayed_one(
        self, open_process: Opener, clock: FakeClock, seed: int
    ) -> None:
        p = open_process()
        life = Life(p, clock, seed)
        # Keys live their lives; now and then the key states catch up, in uneven batches
        for _ in range(6):
            life.run(20)
            p.states.projector.catch_up(batch=life.rng.randint(1, 7))
        life.run(15)
        behind = p.head() - (p.states.view.max_tracking_id("ledger") or 0)
        assert behind > 0
        # A new process starts from the key states, as they are
        o = open_process()
        started = warm_start(o.ledger, o.states)
        # It loaded them and replayed what came after into its index, leaving the table as it was
        assert (started.projected, started.replayed) == (0, behind)
        assert started.position == p.head()
        assert o.states.view.max_tracking_id("ledger") == p.head() - behind
        assert same_index(o.ledger, replayed_up_to(p.store))
        # Another starts, allowed to bring the key states up to date first
        q = open_process()
        started = warm_start(q.ledger, q.states, catch_up_limit=behind)
        # It brought the key states up to date first, and loaded it all
        assert started.projected == behind
        assert started.states_position == started.position == p.head()
        assert started.replayed == 0
        assert started.keys == len(life.keys)
        # Its index is the one a replay builds, and the one the writing process holds
        replayed = replayed_up_to(p.store)
        assert same_index(q.ledger, replayed)
        assert same_index(q.ledger, p.ledger)
        assert q.ledger.index.position == replayed.index.position
        # It verifies each key's token as the writing process does
        for token in life.tokens:
            assert answer(q.ledger, token) == answer(p.ledger, token)
        # The table holds digests and prefixes, never a token
        stored = self.stored_rows()
        assert all(t not in stored and t[12:] not in stored for t in life.tokens)

    def test_events_after_the_key_states_are_replayed_over_them(
        self, open_process: Opener, clock: FakeClock
    ) -> None:
        p = open_process()
        life = Life(p, clock, 7)
        life.run(40)
        p.states.catch_up()
        taken_at = p.head()
        # Keys in the table change after its position was taken, and new ones are minted
        life.run(40)
        assert p.head() > taken_at
        # Loading alone gives the index as it stood at the table's position
        q = open_process()
        assert q.states.view.load(q.ledger.index) == taken_at == q.ledger.index.position
        assert same_index(q.ledger, replayed_up_to(p.store, taken_at))
        # Catching up from there applies only what came after, and ends at the store's state
        assert q.ledger.catch_up() == p.head() - taken_at
        assert same_index(q.ledger, replayed_up_to(p.store))
        # A loaded index takes no second load
        with pytest.raises(ValueError, match="empty index"):
            q.states.view.load(q.ledger.index)

    def test_key_states_far_behind_are_loaded_as_they_are_and_the_rest_replayed(
        self, open_process: Opener, clock: FakeClock
    ) -> None:
        p = open_process()
        life = Life(p, clock, 13)
        life.run(30)
        p.states.catch_up()
        taken_at = p.head()
        life.run(30)
        behind = p.head() - taken_at
        # Further behind than the limit: the start does not wait for the table to catch up
        q = open_process()
        started = warm_start(q.ledger, q.states, catch_up_limit=behind - 1)
        assert (started.projected, started.states_position) == (0, taken_at)
        assert started.replayed == behind
        assert same_index(q.ledger, replayed_up_to(p.store))
        assert q.states.view.max_tracking_id("ledger") == taken_at
        # Within it, the table is caught up first and nothing is left to replay
        r = open_process()
        started = warm_start(r.ledger, r.states, catch_up_limit=behind)
        assert (started.projected, started.replayed) == (behind, 0)
        assert same_index(r.ledger, q.ledger)

    def test_two_processes_projecting_at_once_write_each_position_once(
        self, open_process: Opener, clock: FakeClock
    ) -> None:
        a, b = open_process(), open_process()
        Life(a, clock, 11).run(60)
        total = a.head()
        # Both catch up at once, in small batches, racing for every position
        written: list[int] = []
        start = threading.Barrier(2)

        def run(p: Process) -> None:
            start.wait()
            written.append(p.states.projector.catch_up(batch=2))

        threads = [threading.Thread(target=run, args=(p,)) for p in (a, b)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        # Each position was written once, by one of them, and the table is complete
        assert sum(written) == total
        assert a.states.catch_up() == b.states.catch_up() == 0
        c = open_process()
        assert c.states.view.load(c.ledger.index) == total
        assert same_index(c.ledger, replayed_up_to(a.store))
        # A new event goes to whichever process catches up first, once
        a.ledger.mint(
            owner_id="u1", name="late", scopes=["books:read"], expires_in_days=1, actor="x"
        )
        assert b.states.catch_up() == 1
        assert a.states.catch_up() == 0

    def test_a_process_started_while_another_is_writing_ends_up_equal(
        self, open_process: Opener, clock: FakeClock
    ) -> None:
        writer, projector = open_process(), open_process()
        life = Life(writer, clock, 23)
        life.run(30)
        writer.states.catch_up()
        stop = threading.Event()
        failures: list[BaseException] = []

        def keep(action: Callable[[], object]) -> None:
            try:
                while not stop.is_set():
                    action()
            except BaseException as e:
                failures.append(e)

        # One process keeps writing while another keeps the key states current, an event at a time
        threads = [
            threading.Thread(target=keep, args=(life.step,)),
            threading.Thread(target=keep, args=(lambda: projector.states.projector.catch_up(1),)),
        ]
        for t in threads:
            t.start()
        started: list[tuple[Process, int]] = []
        deadline = time.monotonic() + 60
        try:
            # Processes start meanwhile, one after another, the writer writing before each
            for _ in range(8):
                mark = writer.head()
                while writer.head() < mark + 10:
                    assert time.monotonic() < deadline, "the writer stopped writing"
                    time.sleep(0.001)
                q = open_process()
                warm_start(q.ledger, q.states)
                started.append((q, q.ledger.index.position))
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=60)
        assert not failures
        # Each was, as it became ready, exactly the store as of its position
        for q, position in started:
            assert same_index(q.ledger, replayed_up_to(writer.store, position))
        # And after catching up, each holds what a replay of the whole store holds
        replayed = replayed_up_to(writer.store)
        for q, _ in started:
            q.ledger.catch_up()
            assert same_index(q.ledger, replayed)

    def test_a_load_reads_the_rows_and_their_position_as_of_one_moment(
        self, open_process: Opener, clock: FakeClock
    ) -> None:
        writer = open_process()
        life = Life(writer, clock, 31)
        life.run(30)
        writer.states.catch_up()
        taken_at = writer.head()
        other = open_process()

        class CommitsMidway(VerificationIndex):
            """An index during whose load another process changes the store and the table."""

            def load(
                self, pages: Iterable[Sequence[Sequence[Any]]], id_int: Callable[[Any], int]
            ) -> None:
                def commit_first() -> Iterator[Sequence[Sequence[Any]]]:
                    for i, page in enumerate(pages):
                        if i == 0:
                            life.run(10)
                            assert other.states.catch_up() > 0
                        yield page

                super().load(commit_first(), id_int)

        q = open_process()
        q.ledger = KeyLedger(clock=clock, index=CommitsMidway(), beside=q.store)
        # The rows and the position come from before the other process's commit
        assert q.states.view.load(q.ledger.index) == taken_at
        assert same_index(q.ledger, replayed_up_to(writer.store, taken_at))
        # Catching up brings it to the store's state as usual
        q.ledger.catch_up()
        assert same_index(q.ledger, replayed_up_to(writer.store))

    def test_key_states_that_cannot_be_read_leave_a_full_replay(
        self, open_process: Opener, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        p = open_process()
        life = Life(p, clock, 5)
        life.run(40)
        p.states.catch_up()
        life.run(10)
        q = open_process()
        states = q.states.view.states(life.keys)

        # The connection dies halfway through loading
        def load_half(into: VerificationIndex) -> int:
            half = list(states.values())[: len(states) // 2]
            load_rows(into, [[index_row(state) for state in half]], lambda key_id: key_id.int)
            raise OperationalError("connection lost")

        monkeypatch.setattr(q.states.view, "load", load_half)
        started = warm_start(q.ledger, q.states)
        # Every event was replayed over the half that loaded, to the same index
        assert started.states_position == 0
        assert started.replayed == p.head()
        assert q.ledger.index.fields() == replayed_up_to(p.store).index.fields()

    def test_the_key_list_and_a_key_are_read_from_the_table_with_this_processs_writes(
        self, open_process: Opener, clock: FakeClock
    ) -> None:
        p = open_process()
        life = Life(p, clock, 17)
        life.run(40)
        # The table is behind; a read catches it up to what this process holds first
        assert p.head() > (p.states.view.max_tracking_id("ledger") or 0)
        replayed = replayed_up_to(p.store)
        for owner in OWNERS:
            listed = p.ledger.keys_of(owner)
            assert [s.key_id for s in listed] == [s.key_id for s in replayed.keys_of(owner)]
            assert listed == replayed.keys_of(owner)
        assert p.states.view.max_tracking_id("ledger") == p.head()
        # Oldest first, each with the state its events give
        for owner in OWNERS:
            positions = [s.minted_position for s in p.ledger.keys_of(owner)]
            assert positions == sorted(positions)
        for key_id in life.keys:
            assert p.ledger.key(key_id) == replayed.key(key_id)
        # Another process's mint is found at once, catching up first
        q = open_process()
        minted = q.ledger.mint(
            owner_id="u9", name="new", scopes=["books:read"], expires_in_days=1, actor="x"
        )
        assert p.ledger.key(minted.record.key_id).name == "new"
        assert [s.name for s in p.ledger.keys_of("u9")] == ["new"]

    def test_the_view_keeps_the_newest_state_and_moves_only_from_where_it_is(
        self, open_process: Opener, clock: FakeClock
    ) -> None:
        p = open_process()
        Life(p, clock, 3).run(5)
        view = p.states.view
        p.states.catch_up()
        position = view.max_tracking_id("ledger") or 0
        key_id = next(iter(p.ledger.index.records())).key_id
        newest = view.states([key_id])[key_id]
        older = KeyState(
            key_id=key_id,
            owner_id=newest.owner_id,
            name="older",
            prefix=newest.prefix,
            digest=newest.digest,
            scopes=("account:read",),
            created_at=newest.created_at,
            version=newest.version - 1,
            minted_position=newest.minted_position,
        )
        # A move from a position the view is no longer at fails, and writes nothing
        with pytest.raises(IntegrityError):
            view.apply([older], Tracking("ledger", position + 2), after=position - 1)
        # So does a position the view has passed
        with pytest.raises(IntegrityError):
            view.apply([older], Tracking("ledger", position))
        assert view.max_tracking_id("ledger") == position
        # An older state of a key never replaces a newer one
        view.apply([older], Tracking("ledger", position + 1), after=position)
        assert view.max_tracking_id("ledger") == position + 1
        assert view.states([key_id]) == {key_id: newest}
        assert view.states([UUID(int=0)]) == {}


def test_the_memory_store_has_no_key_states_and_starts_by_replay(clock: FakeClock) -> None:
    backend = backend_for(settings_for("memory:"))
    ledger = KeyLedger(backend.store_env(), clock=clock)
    ledger.mint(owner_id="u1", name="k", scopes=["books:read"], expires_in_days=1, actor="x")
    assert backend.key_states_view(ledger) is None
    fresh = KeyLedger(clock=clock, beside=ledger)
    started = warm_start(fresh, None)
    assert (started.states_position, started.replayed, started.keys) == (0, 1, 1)
    assert fresh.index.fields() == ledger.index.fields()


class TestSQLite(KeyStatesContract):
    @pytest.fixture
    def database_url(self, sqlite_url: str) -> str:
        self.path = sqlite_url.removeprefix("sqlite:")
        return sqlite_url

    def stored_rows(self) -> str:
        with sqlite3.connect(self.path) as conn:
            return repr(conn.execute(f"SELECT * FROM {TABLE}").fetchall())


@pytest.mark.postgres
class TestPostgres(KeyStatesContract):
    @pytest.fixture
    def database_url(self, postgres_url: str) -> str:
        self.schema = parse_qs(urlsplit(postgres_url).query)["schema"][0]
        return postgres_url

    def stored_rows(self) -> str:
        query = SQL("SELECT * FROM {}").format(Identifier(self.schema, TABLE))
        with psycopg.connect(POSTGRES_URL) as conn:
            return repr(conn.execute(query).fetchall())
