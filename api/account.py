"""The account summary: who the caller is and how many keys they hold in each state."""

from __future__ import annotations

from collections import Counter
from typing import Any

from litestar import Controller, Request, get
from litestar.di import NamedDependency

from api.auth import principal_of, requires_scopes
from api.schemas import Account, KeyCounts
from infra.ledger import KeyLedger


class AccountController(Controller):
    path = "/api/v1/account"
    tags = ["account"]

    @get(
        "/",
        guards=[requires_scopes("account:read")],
        response_headers={"Cache-Control": "no-store"},
    )
    async def account(
        self, request: Request[Any, Any, Any], ledger: NamedDependency[KeyLedger]
    ) -> Account:
        """The caller's user id and key counts by status."""
        principal = principal_of(request)
        counts = Counter(ledger.status(r) for r in ledger.keys_of(principal.user_id))
        return Account(
            user_id=principal.user_id,
            keys=KeyCounts(
                active=counts["active"], revoked=counts["revoked"], expired=counts["expired"]
            ),
        )
