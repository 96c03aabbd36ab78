"""When to try a request again: after a 503 or a lost connection, waiting as the ledger asks."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx

# Methods whose second sending changes nothing more than the first did (RFC 9110, 9.2.2).
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounded in tries and in time: `retries` after the first try, none starting later than
    `within` seconds after it; exponential backoff with jitter, never sooner than Retry-After."""

    retries: int = 4
    within: float = 15.0
    first_delay: float = 0.25
    max_delay: float = 4.0

    def delay(self, retry: int, retry_after: float | None, jitter: float) -> float:
        """Seconds to wait before retry number `retry` (1 for the first); `jitter` in [0, 1)
        spreads clients that failed together over the back half of the backoff."""
        backoff = min(self.max_delay, self.first_delay * 2.0 ** (retry - 1)) * (0.5 + jitter / 2)
        return max(backoff, retry_after or 0.0)

    def next_delay(
        self, retry: int, elapsed: float, retry_after: float | None, jitter: float
    ) -> float | None:
        """The wait before retry number `retry`, or None to give up: no retries left, or the
        retry would start past the time allowed."""
        if retry > self.retries:
            return None
        wait = self.delay(retry, retry_after, jitter)
        if elapsed + wait > self.within:
            return None
        return wait


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Retry-After as seconds: delay-seconds or an HTTP-date (RFC 9110, 10.2.3); None if absent
    or unreadable."""
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def retry_after_of(response: httpx.Response) -> float | None:
    return parse_retry_after(response.headers.get("retry-after"))
