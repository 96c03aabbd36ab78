"""The operator's lifetime policy for keys: the longest a key may live, whether it must expire,
and after how many unused days the sweeper revokes it.

As GitHub's organisation policy does, a policy is enforced when a key is minted or rotated (the
request is refused, naming the limit) and when a key is used: a key the policy no longer allows
is blocked — refused, and listed as blocked — not revoked, so relaxing the policy lets it work
again. Every change is an event of one policy aggregate, so the audit trail shows who changed it
and when, and a key's past can be judged by the policy in force at the time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event

from domain.errors import InvalidInput

POLICY_ID: Final = uuid5(UUID("b6f0a2f4-3f0e-4e0e-9a4c-6a1f3e1c2d7b"), "key lifetime policy")
MAX_DAYS: Final = 3650


@dataclass(frozen=True, slots=True)
class Terms:
    """What the policy asks of keys; the defaults ask nothing."""

    max_lifetime_days: int | None = None
    expiry_required: bool = False
    revoke_unused_after_days: int | None = None

    def check(self) -> Terms:
        """The terms, if each is a whole number of days in range; else InvalidInput, named."""
        for field, days in (
            ("max_lifetime_days", self.max_lifetime_days),
            ("revoke_unused_after_days", self.revoke_unused_after_days),
        ):
            if days is None:
                continue
            if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_DAYS:
                raise InvalidInput(field, f"a whole number of days from 1 to {MAX_DAYS}, or null")
        if not isinstance(self.expiry_required, bool):
            raise InvalidInput("expiry_required", "true or false")
        return self

    def refusal(self, expires_in_days: int | None) -> InvalidInput | None:
        """Why a key minted (or rotated) with this expiry would break the policy; None if not."""
        if expires_in_days is None:
            if self.expiry_required or self.max_lifetime_days is not None:
                limit = (
                    f"at most {self.max_lifetime_days} days"
                    if self.max_lifetime_days is not None
                    else "an expiry"
                )
                return InvalidInput(
                    "expires_in_days", f"the key lifetime policy requires {limit}: give one"
                )
            return None
        if self.max_lifetime_days is not None and expires_in_days > self.max_lifetime_days:
            return InvalidInput(
                "expires_in_days",
                f"the key lifetime policy allows at most {self.max_lifetime_days} days",
            )
        return None

    def blocks(self, lifetime: timedelta | None) -> bool:
        """Whether a key with this lifetime (None: it never expires) breaks the policy."""
        if lifetime is None:
            return self.expiry_required or self.max_lifetime_days is not None
        # A second of slack: a key minted for exactly the limit is within it.
        limit = self.max_lifetime_days
        return limit is not None and lifetime > timedelta(days=limit, seconds=1)

    def reason(self) -> str:
        """The policy in words, for a refusal at use."""
        parts = []
        if self.max_lifetime_days is not None:
            parts.append(f"keys may live at most {self.max_lifetime_days} days")
        elif self.expiry_required:
            parts.append("keys must expire")
        return "the key lifetime policy: " + ("; ".join(parts) or "no limits")


NO_POLICY: Final = Terms()


class LifetimePolicy(Aggregate):
    """The one lifetime policy of a ledger, as its operators set it over time."""

    class Set(Aggregate.Created):
        """The first policy an operator set."""

        max_lifetime_days: int | None
        expiry_required: bool
        revoke_unused_after_days: int | None
        actor: str
        at: datetime

    class Changed(Aggregate.Event):
        """An operator changed the policy."""

        max_lifetime_days: int | None
        expiry_required: bool
        revoke_unused_after_days: int | None
        actor: str
        at: datetime

    @event(Set)
    def __init__(
        self,
        max_lifetime_days: int | None,
        expiry_required: bool,
        revoke_unused_after_days: int | None,
        actor: str,
        at: datetime,
    ) -> None:
        self.terms = Terms(max_lifetime_days, expiry_required, revoke_unused_after_days)

    @classmethod
    def first(cls, terms: Terms, actor: str, at: datetime) -> LifetimePolicy:
        terms.check()
        return cls._create(
            cls.Set,
            id=POLICY_ID,
            max_lifetime_days=terms.max_lifetime_days,
            expiry_required=terms.expiry_required,
            revoke_unused_after_days=terms.revoke_unused_after_days,
            actor=actor,
            at=at,
        )

    def change(self, terms: Terms, actor: str, at: datetime) -> bool:
        """Set new terms; the same terms again change nothing."""
        terms.check()
        if terms == self.terms:
            return False
        self._changed(
            max_lifetime_days=terms.max_lifetime_days,
            expiry_required=terms.expiry_required,
            revoke_unused_after_days=terms.revoke_unused_after_days,
            actor=actor,
            at=at,
        )
        return True

    @event(Changed)
    def _changed(
        self,
        max_lifetime_days: int | None,
        expiry_required: bool,
        revoke_unused_after_days: int | None,
        actor: str,
        at: datetime,
    ) -> None:
        self.terms = Terms(max_lifetime_days, expiry_required, revoke_unused_after_days)


def terms_of(e: LifetimePolicy.Set | LifetimePolicy.Changed) -> Terms:
    """The terms a policy event set."""
    return Terms(e.max_lifetime_days, e.expiry_required, e.revoke_unused_after_days)
