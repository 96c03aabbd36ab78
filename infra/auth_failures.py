"""Failed authentication attempts, limited per client IP and per token prefix.

Only a credential that has already failed is counted or limited: a valid token never reaches
this code, so it is never slowed or refused, whoever else failed from its address. Counting is
in memory (a dict under a lock, no I/O); `AuthFailureSync` adds this process's counts to a
store shared by every process and replica, and brings back the subjects that are over their
limit there, a fraction of a second behind. Windows are fixed: `window` seconds, the same
boundaries in every process.

A subject is `ip:<address>` (IPv6 by its /64, which one client can hold whole) or
`prefix:<first 12 characters>` of a token-shaped credential, never more of it.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable
from typing import Final

from domain.token import DISPLAY_PREFIX_LENGTH, PREFIX

log = logging.getLogger("anthra.auth_failures")

IP: Final = "ip:"
PREFIX_SUBJECT: Final = "prefix:"
# A process stops taking new subjects in a window beyond this many; the client-IP subject of
# an attacker inventing a new prefix per attempt is what limits them anyway.
MAX_SUBJECTS: Final = 100_000

Counts = dict[tuple[int, str], int]


def ip_subject(address: str | None) -> str | None:
    """The subject counting a client address: IPv4 itself, IPv6 by its /64."""
    if not address:
        return None
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return IP + str(ip.ipv4_mapped)
        return IP + str(ipaddress.IPv6Network((ip, 64), strict=False))
    return IP + str(ip)


def prefix_subject(credential: str | None) -> str | None:
    """The subject counting a token prefix, or None for a credential that is not token-shaped:
    12 characters of a secret of some other kind would be a part of it worth keeping safe."""
    if not credential or not credential.startswith(PREFIX):
        return None
    return PREFIX_SUBJECT + credential[:DISPLAY_PREFIX_LENGTH]


class AuthFailures:
    """Counts failed attempts per subject per window; says when a subject is over its limit.

    `per_ip` and `per_prefix` failures are answered as failures; the next ones, until the
    window ends, as "too many" with the seconds left. 0 turns a limit off.
    """

    def __init__(
        self,
        *,
        per_ip: int,
        per_prefix: int,
        window: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.per_ip = per_ip
        self.per_prefix = per_prefix
        self.window = window
        self.clock = clock
        self._lock = threading.Lock()
        self._window_index = self._index(clock())
        self._counts: dict[str, int] = {}  # this process's, in the current window
        self._unsent: Counts = {}  # counted here, not yet added to the shared store
        self._over: frozenset[str] = frozenset()  # over the limit in the shared store
        self._full_logged = False

    @property
    def enabled(self) -> bool:
        return bool(self.per_ip or self.per_prefix)

    @property
    def threshold(self) -> int:
        """The smallest limit in force: a subject below it is over no limit."""
        return min(n for n in (self.per_ip, self.per_prefix) if n) if self.enabled else 0

    def _index(self, now: float) -> int:
        return math.floor(now / self.window)

    def _limit(self, subject: str) -> int:
        return self.per_ip if subject.startswith(IP) else self.per_prefix

    def attempt_failed(self, client_ip: str | None, credential: str | None = None) -> int | None:
        """Count a failed attempt; the seconds to wait (for Retry-After) if its client IP or
        its token prefix was already over the limit, else None."""
        subjects = [
            s
            for s in (ip_subject(client_ip), prefix_subject(credential))
            if s is not None and self._limit(s)
        ]
        if not subjects:
            return None
        now = self.clock()
        with self._lock:
            self._roll(now)
            for subject in subjects:
                if subject in self._over or self._counts.get(subject, 0) >= self._limit(subject):
                    # Not counted again: a limited client's traffic never reaches the store.
                    return max(1, math.ceil((self._window_index + 1) * self.window - now))
            for subject in subjects:
                count = self._counts.get(subject)
                if count is None and len(self._counts) >= MAX_SUBJECTS:
                    self._log_full()
                    continue
                self._counts[subject] = (count or 0) + 1
                key = (self._window_index, subject)
                self._unsent[key] = self._unsent.get(key, 0) + 1
        return None

    def _roll(self, now: float) -> None:
        index = self._index(now)
        if index != self._window_index:
            self._window_index = index
            self._counts = {}
            self._over = frozenset()
            self._full_logged = False

    def _log_full(self) -> None:
        if not self._full_logged:
            self._full_logged = True
            log.warning(
                "failed authentication: over %d subjects this window; new ones are not counted",
                MAX_SUBJECTS,
            )

    # For the sync thread

    def current_window(self) -> int:
        with self._lock:
            self._roll(self.clock())
            return self._window_index

    def take_unsent(self) -> Counts:
        """The counts not yet in the shared store; give them back if storing them fails."""
        with self._lock:
            unsent, self._unsent = self._unsent, {}
            return unsent

    def give_back(self, counts: Counts) -> None:
        """Keep counts that could not be stored for the next try, but none from a past window."""
        with self._lock:
            self._roll(self.clock())
            for key, count in counts.items():
                if key[0] >= self._window_index:
                    self._unsent[key] = self._unsent.get(key, 0) + count

    def learn_shared(self, window_index: int, counts: Iterable[tuple[str, int]]) -> None:
        """The shared store's subjects at or above the threshold in a window: those over their
        own limit are refused here from now on, until the window ends."""
        over = frozenset(s for s, n in counts if self._limit(s) and n >= self._limit(s))
        with self._lock:
            self._roll(self.clock())
            if window_index == self._window_index:
                self._over = over

    def over_limit(self) -> frozenset[str]:
        """The subjects the shared store last said are over their limit, for the current window."""
        with self._lock:
            return self._over
