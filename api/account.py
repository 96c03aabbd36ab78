"""The account summary: who the caller is, their keys by status, and each key's recent use."""

from __future__ import annotations

import functools
from collections import Counter
from typing import Any

from litestar import Controller, Request, get
from litestar.di import NamedDependency

from api.auth import principal_of, requires_scopes
from api.openapi import SESSION_OR_TOKEN
from api.schemas import Account, DayUsage, KeyCounts, KeyUsage, WhoAmI
from domain.api_key import ACTIVE, BLOCKED, EXPIRED, REVOKED, ROTATED, SUSPENDED
from domain.scopes import in_order
from ledger.key_ledger import KeyLedger, expiring_within
from ledger.usage_report import UsageReport

USAGE_DAYS = 30
# As GitHub and GitLab warn a week ahead.
EXPIRY_WARNING_DAYS = 7


@functools.lru_cache(maxsize=64)
def _ordered(scopes: frozenset[str]) -> tuple[str, ...]:
    # Keys hold few distinct sets of six scopes: sorted once per set, not once per request.
    return in_order(scopes)


class AccountController(Controller):
    path = "/api/v1/account"
    tags = ["account"]
    security = SESSION_OR_TOKEN

    @get("/whoami")
    async def whoami(self, request: Request[Any, Any, Any]) -> WhoAmI:
        """Who is calling: any valid token may ask what it is and what it may do; no I/O."""
        principal = principal_of(request)
        return WhoAmI(
            user_id=principal.user_id,
            via=principal.via,
            key_id=str(principal.key_id) if principal.key_id else None,
            scopes=list(_ordered(principal.scopes)),
            expires_at=principal.expires_at,
        )

    @get("/", sync_to_thread=True, guards=[requires_scopes("account:read")])
    def account(
        self,
        request: Request[Any, Any, Any],
        ledger: NamedDependency[KeyLedger],
        usage: NamedDependency[UsageReport],
    ) -> Account:
        """The caller's user id, key counts by status, and requests per key per day (30 days)."""
        principal = principal_of(request)
        records = ledger.keys_of(principal.user_id)
        counts = Counter(ledger.status(r) for r in records)
        key_ids = [r.key_id for r in records]
        last_used = usage.last_used(key_ids)
        daily = usage.daily(key_ids, days=USAGE_DAYS)
        per_key = []
        for record in records:
            days = sorted(daily.get(record.key_id, {}).items())
            per_key.append(
                KeyUsage(
                    key_id=str(record.key_id),
                    name=record.name,
                    prefix=record.prefix,
                    last_used_at=last_used.get(record.key_id),
                    requests=sum(n for _, n in days),
                    days=[DayUsage(day=day, requests=n) for day, n in days],
                    expires_at=record.expires_at,
                )
            )
        return Account(
            user_id=principal.user_id,
            keys=KeyCounts(
                active=counts[ACTIVE],
                revoked=counts[REVOKED],
                expired=counts[EXPIRED],
                suspended=counts[SUSPENDED],
                blocked=counts[BLOCKED],
                rotated=counts[ROTATED],
                expiring_soon=len(expiring_within(ledger, records, EXPIRY_WARNING_DAYS)),
            ),
            usage=per_key,
            expires_at=principal.expires_at,
        )
