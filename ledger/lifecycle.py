"""The key lifecycle's verbs beyond mint and revoke: rotate (a successor with an overlap),
suspend and resume, and the operator's lifetime policy.

Every one is events: on the key (Rotated, Suspended, Resumed), on its successor (Minted naming
its predecessor), on the policy aggregate (Set, Changed), and under an Idempotency-Key on the
request's record, all saved in one transaction.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from eventsourcing.application import AggregateNotFoundError

from domain import token as token_format
from domain.api_key import MAX_EXPIRY_DAYS, MIN_EXPIRY_DAYS, SUSPENDED, TERMINAL, ApiKey
from domain.errors import InvalidInput, KeyNotActive
from domain.idempotency import HEADER as IDEMPOTENCY_HEADER
from domain.idempotency import SUPERSEDED, fingerprint, record_id
from domain.lifetime_policy import POLICY_ID, LifetimePolicy, Terms
from ledger.deadline import bounded
from ledger.recording import Events, KeyBusy, Recording
from projections.verification_index.index import VerificationIndex

DAY = timedelta(days=1)


class RotatedKey:
    """A successor's record and token (shown once), and when its predecessor stops."""

    __slots__ = ("predecessor_id", "record", "retires_at", "token")

    def __init__(self, token: str, record: Any, predecessor_id: UUID, retires_at: Any) -> None:
        self.token = token
        self.record = record
        self.predecessor_id = predecessor_id
        self.retires_at = retires_at

    def __repr__(self) -> str:
        # The token must never reach a log or a traceback through a repr.
        return f"RotatedKey(prefix={self.record.prefix!r}, key_id={self.record.key_id})"


def successor_days(predecessor: ApiKey, terms: Terms) -> int | None:
    """A successor's lifetime when none is asked for: its predecessor's, within the policy."""
    lifetime = predecessor.lifetime
    days = None if lifetime is None else max(MIN_EXPIRY_DAYS, math.ceil(lifetime / DAY))
    if days is not None:
        days = min(days, MAX_EXPIRY_DAYS)
    if terms.max_lifetime_days is not None:
        days = terms.max_lifetime_days if days is None else min(days, terms.max_lifetime_days)
    return days


class Lifecycle(Recording):
    """Rotate, suspend, resume and the lifetime policy: the key ledger's base (it provides the
    loading, the idempotency records and the reads these verbs use)."""

    def now(self) -> datetime:
        raise NotImplementedError

    def key(self, key_id: str | UUID, owner_id: str | None = None) -> Any:
        raise NotImplementedError

    def _load(self, key_id: UUID, owner_id: str | None) -> ApiKey:
        raise NotImplementedError

    def _begin(
        self, owner_id: str, idempotency_key: str, request: str, key_id: UUID, at: datetime
    ) -> tuple[Any, Events]:
        raise NotImplementedError

    def _change(
        self,
        key_id: str | UUID,
        owner_id: str | None,
        command: Callable[[ApiKey], bool],
        idempotency: tuple[str | None, tuple[str, object]] = (None, ("", None)),
    ) -> Any:
        raise NotImplementedError

    index: VerificationIndex

    @bounded()
    def policy_history(self) -> list[Any]:
        """Every change of the lifetime policy, oldest first, read from the store (for judging a
        key's past by the policy in force at the time)."""
        return list(self.events.get(POLICY_ID))

    def lifetime_terms(self) -> Terms:
        """The lifetime policy in force, as this process's index holds it: no read of the store
        per mint. A change made by another process a few milliseconds ago may not be here yet;
        a key minted past it in that moment is blocked at use all the same."""
        return self.index.terms

    @bounded()
    def rotate(
        self,
        key_id: UUID,
        *,
        actor: str,
        grace_seconds: int = 0,
        expires_in_days: int | None = None,
        default_expiry: bool = True,
        owner_id: str | None = None,
        context: dict[str, str] | None = None,
        idempotency_key: str | None = None,
    ) -> RotatedKey:
        """Mint a successor with the key's name and scopes, and retire the key at the end of the
        grace (never past its own expiry). `default_expiry` gives the successor the key's own
        lifetime (within the policy) when `expires_in_days` is not given.

        Under an idempotency key, a retry within the grace supersedes the successor the earlier
        attempt minted (its token may never have reached the client) with a new one."""
        if isinstance(grace_seconds, bool) or not isinstance(grace_seconds, int):
            raise InvalidInput("grace_seconds", "a whole number of seconds")
        grace = timedelta(seconds=grace_seconds)
        request = fingerprint("rotate", str(key_id), grace_seconds, expires_in_days)

        def decide() -> tuple[Events, Callable[[], RotatedKey]]:
            at = self.now()
            old = self._load(key_id, owner_id)
            status = old.status(at)
            if status in TERMINAL or status == SUSPENDED:
                # Said before any policy refusal: an ended key's rotation is a conflict.
                raise KeyNotActive(str(old.id), status, "rotated")
            terms = self.lifetime_terms()
            days = successor_days(old, terms) if default_expiry else expires_in_days
            refusal = terms.refusal(days)
            if refusal is not None:
                raise refusal
            token = token_format.generate()
            successor = ApiKey.mint(
                key_id=uuid4(),
                owner_id=old.owner_id,
                name=old.name,
                token_sha256=token_format.digest(token).hex(),
                prefix=token_format.display_prefix(token),
                scopes=list(old.scopes),
                expires_in_days=days,
                actor=actor,
                at=at,
                context=context,
                predecessor_id=old.id,
            )
            events: Events = list(successor.collect_events())
            replacing = False
            if idempotency_key is not None:
                retried, record_events = self._begin(
                    old.owner_id, idempotency_key, request, successor.id, at
                )
                events += record_events
                if retried is not None:
                    earlier = self._load(retried.key_id, owner_id)
                    earlier.revoke(actor, SUPERSEDED, at, context)
                    retried.retried(key_id=successor.id, at=at)
                    events += [*earlier.collect_events(), *retried.collect_events()]
                    replacing = True
            retires_at = old.rotate(successor.id, grace, actor, at, context, replacing=replacing)
            events += old.collect_events()

            def answer() -> RotatedKey:
                return RotatedKey(token, self.key(successor.id), old.id, retires_at)

            return events, answer

        return self.until_saved(
            decide,
            lambda: KeyBusy(
                record_id(owner_id or "", idempotency_key) if idempotency_key else key_id,
                f"{IDEMPOTENCY_HEADER} request" if idempotency_key else "",
            ),
        )

    @bounded()
    def suspend(
        self,
        key_id: UUID,
        *,
        actor: str,
        reason: str = "",
        owner_id: str | None = None,
        context: dict[str, str] | None = None,
    ) -> Any:
        """Refuse a key until it is resumed; suspending it again changes nothing."""
        return self._change(
            key_id, owner_id, lambda key: key.suspend(actor, self.now(), reason, context)
        )

    @bounded()
    def resume(
        self,
        key_id: UUID,
        *,
        actor: str,
        owner_id: str | None = None,
        context: dict[str, str] | None = None,
    ) -> Any:
        """Accept a suspended key again; resuming a key not suspended changes nothing."""
        return self._change(key_id, owner_id, lambda key: key.resume(actor, self.now(), context))

    @bounded()
    def set_lifetime_policy(self, terms: Terms, actor: str) -> Terms:
        """Set the operator's lifetime policy; the same terms again change nothing."""

        def decide() -> tuple[Events, Callable[[], Terms]]:
            at = self.now()
            try:
                policy: LifetimePolicy = self.repository.get(POLICY_ID)
            except AggregateNotFoundError:
                policy = LifetimePolicy.first(terms, actor, at)
            else:
                policy.change(terms, actor, at)
            return list(policy.collect_events()), self.lifetime_terms

        return self.until_saved(decide, lambda: KeyBusy(POLICY_ID, "the lifetime policy"))
