"""Key usage counted in memory on the verify path: requests per key per UTC day, and last used.

Usage is not an event. The verify path only appends the key (its record or its id) to an
in-memory list; a background flusher (infra.usage_flusher) turns the lists into counts and adds
them to a usage store every few seconds. Reads combine the store with this process's unflushed
counts (ledger.usage_report), so a process sees its own uses at once and other processes' within
a flush.
"""

from __future__ import annotations

import math
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from itertools import islice
from uuid import UUID

from projections.verification_index.index import KeyRecord

DAY_SECONDS = 86_400
_EPOCH_DAY = date(1970, 1, 1)


def utc_day(epoch_seconds: float) -> date:
    """The UTC calendar day of an instant given in epoch seconds."""
    return _EPOCH_DAY + timedelta(days=math.floor(epoch_seconds / DAY_SECONDS))


def utc_instant(epoch_seconds: float) -> datetime:
    return datetime.fromtimestamp(epoch_seconds, UTC)


@dataclass
class UsageBatch:
    """Requests per (key, UTC day) and each key's latest use in epoch seconds."""

    counts: dict[tuple[UUID, date], int] = field(default_factory=dict)
    last_used: dict[UUID, float] = field(default_factory=dict)

    def merge(self, other: UsageBatch) -> None:
        """Add another batch's counts to this one; last used is the later of the two."""
        for key, requests in other.counts.items():
            self.counts[key] = self.counts.get(key, 0) + requests
        for key_id, instant in other.last_used.items():
            if instant > self.last_used.get(key_id, -math.inf):
                self.last_used[key_id] = instant

    @property
    def requests(self) -> int:
        """How many uses the batch counts, all keys and days together."""
        return sum(self.counts.values())

    def __bool__(self) -> bool:
        return bool(self.counts or self.last_used)


class _Slot:
    """The uses of one `resolution`-second window of a UTC day, in the order they came."""

    __slots__ = ("day", "end", "keys", "retired", "start", "taken")

    def __init__(self, start: float, end: float, day: date) -> None:
        self.start = start
        self.end = end
        self.day = day
        self.keys: list[UUID | KeyRecord] = []
        self.taken = 0  # keys[:taken] have been counted
        self.retired = False  # no longer current, and found drained once already


# Matches no instant, so the first use opens the first real slot.
_NO_SLOT = _Slot(math.inf, -math.inf, _EPOCH_DAY)


class UsageCounter:
    """Counts verified requests per key in memory; the verify path pays one list append.

    `used` takes no lock and touches only the current slot, which the previous call left in the
    cache. Counting happens in `drain`, in C (`Counter`), on the flusher's thread. A dict of
    per-key counters on the verify path, with or without a lock, cost four to six times as
    much here: its lookups miss the cache on every call (bench/usage.py).

    No use is lost to a concurrent drain: a drain never swaps or clears a list that `used` may
    append to; it counts `keys[taken:len]` and moves `taken`. A slot leaves the registry only
    after it stopped being current and then drained empty twice, so a `used` that read the old
    slot just as a newer one replaced it has a whole flush interval to append.

    Last used is the start of the slot of the key's latest use: the instant rounded down to
    `resolution` seconds (1 by default).
    """

    def __init__(self, resolution: int = 1) -> None:
        if resolution < 1 or DAY_SECONDS % resolution:
            raise ValueError("resolution must be a whole number of seconds dividing a day")
        self.resolution = resolution
        self._slot = _NO_SLOT
        self._slots: dict[float, _Slot] = {}
        self._slots_lock = threading.Lock()  # opening and retiring slots
        self._drain_lock = threading.Lock()  # one counter of `keys[taken:]` at a time
        self._flush_lock = threading.RLock()  # a flush, from drain to commit
        self._held = UsageBatch()  # counted but not drained: given back, or counted by pending

    def used(self, key: UUID | KeyRecord, now: float) -> None:
        """Count one verified request of a key at `now` (epoch seconds): no lock, no I/O.

        `key` is the key's id or, cheaper, its KeyRecord: verify has just read the record, so
        it is in the cache, and it hashes by identity in C where a UUID hashes in Python.
        """
        slot = self._slot
        if slot.start <= now < slot.end:
            slot.keys.append(key)
        else:
            self._use_other_slot(key, now)

    def _use_other_slot(self, key: UUID | KeyRecord, now: float) -> None:
        """A new window (once a second), or a straggler stamped before the current window."""
        start = float(math.floor(now / self.resolution) * self.resolution)
        with self._slots_lock:
            slot = self._slots.get(start)
            if slot is None:
                slot = _Slot(start, start + self.resolution, utc_day(start))
                self._slots[start] = slot
            if self._slot is _NO_SLOT or start > self._slot.start:
                self._slot = slot
            slot.keys.append(key)

    def drain(self) -> UsageBatch:
        """Take every use counted since the last drain, and any batch given back by restore."""
        with self._drain_lock:
            batch = self._collect(retire=True)
            batch.merge(self._held)
            self._held = UsageBatch()
            return batch

    def restore(self, batch: UsageBatch) -> None:
        """Give back a drained batch that could not be stored; the next drain includes it."""
        with self._drain_lock:
            self._held.merge(batch)

    def pending(self) -> UsageBatch:
        """A copy of the uses counted here and not drained yet, batches given back included."""
        with self._drain_lock:
            # Counted once: the next drain hands out what this counts, without counting again.
            self._held.merge(self._collect())
            return UsageBatch(dict(self._held.counts), dict(self._held.last_used))

    @contextmanager
    def flushing(self) -> Iterator[UsageBatch]:
        """Drain for a flush; if the block raises, the batch is given back, so nothing is lost."""
        with self._flush_lock:
            batch = self.drain()
            try:
                yield batch
            except BaseException:
                self.restore(batch)
                raise

    @contextmanager
    def between_flushes(self) -> Iterator[UsageBatch]:
        """The pending uses, with no flush committing until the block ends.

        A reader that adds the store's counts to these inside the block counts every use once:
        it never sees a batch both in the store and pending, nor in neither.
        """
        with self._flush_lock:
            yield self.pending()

    def _collect(self, retire: bool = False) -> UsageBatch:
        """Count the uses appended since the last collect; a drain also retires slots."""
        with self._slots_lock:
            slots = sorted(self._slots.values(), key=lambda s: s.start)
            current = self._slot
        per_day: dict[date, Counter[UUID | KeyRecord]] = {}
        latest: dict[UUID | KeyRecord, float] = {}
        emptied: list[_Slot] = []
        for slot in slots:
            end = len(slot.keys)
            if end > slot.taken:
                counted = Counter(islice(slot.keys, slot.taken, end))
                slot.taken = end
                # Slots run oldest first, so each key ends with the start of its latest slot.
                latest.update(dict.fromkeys(counted, slot.start))
                same_day = per_day.get(slot.day)
                if same_day is None:
                    per_day[slot.day] = counted
                else:
                    same_day.update(counted)
            elif retire and slot is not current:
                # Only drains retire: a slot's grace is then flush intervals, however often
                # reports read.
                if slot.retired:
                    emptied.append(slot)
                slot.retired = True
        if emptied:
            with self._slots_lock:
                for slot in emptied:
                    # A straggler may have appended under the lock since the check above.
                    if self._slots.get(slot.start) is slot and len(slot.keys) == slot.taken:
                        del self._slots[slot.start]
        return _batch_of(per_day, latest)


def _batch_of(
    per_day: dict[date, Counter[UUID | KeyRecord]], latest: dict[UUID | KeyRecord, float]
) -> UsageBatch:
    """Counts by record or id, as a batch by key id; hashes each UUID once where it can."""
    counts: dict[tuple[UUID, date], int] = {}
    last_used: dict[UUID, float] = {}
    key_ids: dict[UUID | KeyRecord, UUID] = {}
    for key in latest:
        key_ids[key] = key if isinstance(key, UUID) else key.key_id
    for key, instant in latest.items():
        key_id = key_ids[key]
        size = len(last_used)
        # UUID.__hash__ is Python code: insert once, and look again only if the id was there
        # already (a key counted both by record and by id).
        last_used.setdefault(key_id, instant)
        if len(last_used) == size and instant > last_used[key_id]:
            last_used[key_id] = instant
    for day, counted in per_day.items():
        for key, requests in counted.items():
            pair = (key_ids[key], day)
            size = len(counts)
            counts.setdefault(pair, requests)
            if len(counts) == size:
                counts[pair] += requests
    return UsageBatch(counts, last_used)
