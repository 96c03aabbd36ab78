"""Stale keys: those the lifetime policy's "revoke keys unused for N days" would revoke now.

A key counts as used at its last verified use, or at its minting if it was never used, so a key
minted yesterday is not stale. Keys already ended (revoked, expired, rotated) are left alone.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from domain.api_key import TERMINAL
from ledger.key_ledger import KeyLedger
from ledger.usage_report import UsageReport

REASON = "unused"


def stale_keys(
    ledger: KeyLedger, usage: UsageReport, days: int, records: Iterable[Any] | None = None
) -> list[tuple[Any, datetime]]:
    """(record, when it was last used or minted) for every live key unused for `days` days,
    oldest first."""
    now = ledger.now()
    cutoff = now - timedelta(days=days)
    live = [
        r
        for r in (ledger.keys_minted_before(cutoff) if records is None else records)
        if ledger.status(r) not in TERMINAL and r.created_at < cutoff
    ]
    last_used = usage.last_used(r.key_id for r in live)
    found = []
    for record in live:
        seen = last_used.get(record.key_id, record.created_at)
        if seen < cutoff:
            found.append((record, seen))
    found.sort(key=lambda pair: pair[1])
    return found
