"""Commands saved together: callers that arrive while a save is under way are saved by the next
save, in one transaction; each still gets its own answer, its own error, and its own deadline."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import pytest

from domain.api_key import ApiKey
from domain.scopes import ALL_SCOPES
from ledger.deadline import StoreUnavailable, within
from ledger.group_commit import GroupCommit, Waiting
from ledger.key_ledger import KeyLedger

MEMORY = {"PERSISTENCE_MODULE": "eventsourcing.popo"}


class SlowStore:
    """Records what each save held; the first save waits until told to go on."""

    def __init__(self) -> None:
        self.saves: list[list[str]] = []
        self.first_started = threading.Event()
        self.go_on = threading.Event()
        self.position = 0

    def save(self, batch: list[Waiting[str]]) -> None:
        if not self.saves:
            self.first_started.set()
            assert self.go_on.wait(5)
        self.saves.append([w.item for w in batch])
        for waiting in batch:
            if waiting.item == "refused":
                waiting.error = ValueError("refused")
            else:
                self.position += 1
                waiting.positions = [self.position]


def queued(commit: GroupCommit[str]) -> int:
    with commit._lock:
        return len(commit._queue)


def test_commands_that_arrive_during_a_save_are_saved_together_next() -> None:
    store = SlowStore()
    commit = GroupCommit(store.save)
    with ThreadPoolExecutor(4) as pool:
        # One command is being saved
        first = pool.submit(commit.save, "a")
        assert store.first_started.wait(5)
        # Three more arrive meanwhile, one of which the store refuses
        later = [pool.submit(commit.save, item) for item in ("b", "refused", "c")]
        while queued(commit) < 3:
            time.sleep(0.001)
        store.go_on.set()
        # The three were saved in one go, after the first
        assert first.result(5) == [1]
        assert later[0].result(5) == [2]
        with pytest.raises(ValueError, match="refused"):
            later[1].result(5)
        assert later[2].result(5) == [3]
    assert store.saves == [["a"], ["b", "refused", "c"]]


def test_a_command_whose_deadline_passes_in_the_queue_is_not_saved() -> None:
    store = SlowStore()
    commit = GroupCommit(store.save)
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(commit.save, "a")
        assert store.first_started.wait(5)

        def late() -> Sequence[int] | None:
            with within(0.05):
                return commit.save("late")

        waiting = pool.submit(late)
        # It gives up while the first save is still under way, having changed nothing
        with pytest.raises(StoreUnavailable):
            waiting.result(5)
        store.go_on.set()
        assert first.result(5) == [1]
    # The next command is saved at once: nobody is left holding the turn
    assert commit.save("b") == [2]
    assert store.saves == [["a"], ["b"]]


def test_many_writers_at_once_all_answer_from_the_index_at_their_positions() -> None:
    ledger = KeyLedger(MEMORY)

    # Sixteen threads mint and then revoke keys at once
    def mint_and_revoke(i: int) -> None:
        minted = ledger.mint(
            owner_id=f"u{i % 4}",
            name=f"k{i}",
            scopes=["books:read"],
            expires_in_days=None,
            actor="user:u",
        )
        # Read-your-writes: each answer comes from the index
        assert minted.record.key_id is not None
        record = ledger.revoke(minted.record.key_id, actor="user:u")
        assert record.revoked_at is not None

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(mint_and_revoke, range(200)))

    # The index holds every event, at the store's last position, as a replay does
    assert ledger.index.position == ledger.recorder.max_notification_id() == 400
    replayed = KeyLedger(beside=ledger)
    replayed.catch_up()
    assert replayed.index.fields() == ledger.index.fields()


def test_a_conflict_in_a_batch_is_decided_again_and_the_others_are_saved() -> None:
    ledger = KeyLedger(MEMORY)
    minted = ledger.mint(
        owner_id="u", name="k", scopes=["books:read"], expires_in_days=None, actor="user:u"
    )
    key_id = minted.record.key_id

    # Forty scope changes of one key race, each to scopes of its own: every one is saved
    # once, on the latest version
    known = sorted(ALL_SCOPES)
    choices = [list(c) for n in (2, 3, 4) for c in itertools.combinations(known, n)][:40]

    def set_scopes(scopes: list[str]) -> None:
        ledger.set_scopes(key_id, scopes, actor="user:u")

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(set_scopes, choices))
    events = list(ledger.events.get(key_id))
    assert [e.originator_version for e in events] == list(range(1, 42))
    assert sum(isinstance(e, ApiKey.ScopesSet) for e in events) == 40
    assert ledger.index.position == ledger.recorder.max_notification_id()
