"""The wire schema: msgspec Structs, requests separate from responses."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

from api.query_values import Instant
from domain.actors import ActorKind
from domain.api_key import MAX_NAME_LENGTH, Status
from domain.scopes import SCOPES
from domain.verification import Code

# Printable text on one line (no control, format or separator character), and for a name
# something besides spaces: the ledger's text rule, as far as a pattern can say it.
# (U+2028 and U+2029 are the only line and paragraph separators.)
LINE_PATTERN = r"^[^\p{C}\u2028\u2029]*$"
TEXT_PATTERN = r"^[^\p{C}\u2028\u2029]*[^\p{C}\p{Z}][^\p{C}\u2028\u2029]*$"
NO_TOKEN = "never a token (at most its 12-character display prefix)"  # noqa: S105
ScopeName = Annotated[str, Meta(extra_json_schema={"enum": list(SCOPES)})]
Name = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=MAX_NAME_LENGTH,
        description=f"What the key is for: printable text on one line, {NO_TOKEN}",
        # For the schema only: Python's re has no \p{…}; the ledger's own rule decides.
        extra_json_schema={"pattern": TEXT_PATTERN},
    ),
]
ScopeList = Annotated[
    list[ScopeName],
    Meta(min_length=1, max_length=6, description="Scopes to grant; at least one"),
]
ExpiryDays = Annotated[int, Meta(ge=1, le=3650, description="Whole days until it expires")]


class MintRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Mint a key."""

    name: Name
    scopes: ScopeList
    expires_in_days: ExpiryDays | None = None


class SetScopesRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Replace a key's scopes."""

    scopes: ScopeList


GraceSeconds = Annotated[
    int,
    Meta(
        ge=0,
        le=86_400,
        description="How long the old key keeps working beside its successor (never past its "
        "own expiry); 0 stops it now",
    ),
]


class RotateRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Rotate a key: a successor with its name and scopes; the old key stops after the grace."""

    grace_seconds: GraceSeconds = 0
    # Left out: the old key's lifetime (within the lifetime policy); null: it never expires.
    expires_in_days: ExpiryDays | UnsetType | None = UNSET


class SuspendRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Suspend a key until it is resumed."""

    reason: Annotated[
        str,
        Meta(
            max_length=200,
            description=f"Why, for the audit history: printable text on one line, {NO_TOKEN}",
            extra_json_schema={"pattern": LINE_PATTERN},
        ),
    ] = ""


class LifetimePolicyTerms(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The operator's lifetime policy for keys; null or false asks nothing."""

    max_lifetime_days: Annotated[int, Meta(ge=1, le=3650)] | None = None
    expiry_required: bool = False
    revoke_unused_after_days: Annotated[int, Meta(ge=1, le=3650)] | None = None


class LifetimePolicyView(msgspec.Struct, frozen=True):
    """The lifetime policy in force, and the keys it blocks now."""

    max_lifetime_days: int | None
    expiry_required: bool
    revoke_unused_after_days: int | None
    blocked_keys: int


class StaleKey(msgspec.Struct, frozen=True):
    """A live key unused for the policy's number of days."""

    id: str
    owner_id: str
    prefix: str
    name: str
    last_used_or_minted_at: datetime


class StaleKeys(msgspec.Struct, frozen=True):
    """What the sweeper would revoke as unused now, oldest use first."""

    revoke_unused_after_days: int | None
    keys: list[StaleKey]


class ReportedToken(msgspec.Struct, frozen=True):
    """One token a partner found, as GitHub sends it (fields it may add are ignored)."""

    token: Annotated[str, Meta(max_length=512)]
    type: Annotated[str, Meta(max_length=100)] = ""
    url: Annotated[str, Meta(max_length=4096)] = ""
    source: Annotated[str, Meta(max_length=100)] = ""


class TokenLabel(msgspec.Struct, frozen=True):
    """A reported token's verdict, by its sha256: GitHub's secret-scanning feedback format."""

    token_hash: str
    token_type: str
    label: Literal["true_positive", "false_positive"]


class VerifyRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Ask whether a token is valid for some scopes, now or at an instant in the past."""

    token: Annotated[str, Meta(max_length=512)]
    scopes: Annotated[list[ScopeName], Meta(max_length=6)] = []
    as_of: Instant | None = None


class Key(msgspec.Struct, frozen=True):
    """A key as its owner sees it: never the token, only its first 12 characters."""

    id: str
    prefix: str
    name: str
    scopes: list[str]
    status: Status
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None = None
    # A rotated key's successor and when it stops (or stopped); a successor's predecessor.
    retires_at: datetime | None = None
    successor_id: str | None = None
    predecessor_id: str | None = None


class MintedKey(msgspec.Struct, frozen=True):
    """A new key with its token: shown this once, never again."""

    id: str
    token: str
    prefix: str
    name: str
    scopes: list[str]
    created_at: datetime
    expires_at: datetime | None


class RotatedKey(msgspec.Struct, frozen=True):
    """A key's successor with its token (shown this once), and when the old key stops."""

    id: str
    token: str
    prefix: str
    name: str
    scopes: list[str]
    created_at: datetime
    expires_at: datetime | None
    predecessor_id: str
    predecessor_retires_at: datetime


class KeyAsOf(msgspec.Struct, frozen=True):
    """A key as it was at an instant in the past."""

    id: str
    prefix: str
    name: str
    scopes: list[str]
    status: Status
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    as_of: datetime


class KeyList(msgspec.Struct, frozen=True):
    keys: list[Key]


class _EventCommon(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What every event shows: when, who, the key's version after it, and where from; in the
    audit trail also its store position, its key and its chain value."""

    at: datetime
    actor: str
    version: int
    context: dict[str, str] | None = None
    position: int | None = None
    key_id: str | None = None
    chain: str | None = None
    # The actor taken apart, so that no client parses it: the user id, key id or operator name.
    actor_kind: ActorKind | None = None
    actor_id: str | None = None


class MintedEvent(_EventCommon, frozen=True, tag="Minted", tag_field="type"):
    name: str
    prefix: str
    scopes: list[str]
    expires_at: datetime | None
    # For a successor minted by rotation: the key it took over from.
    predecessor_id: str | None = None


class ScopesSetEvent(_EventCommon, frozen=True, tag="ScopesSet", tag_field="type"):
    scopes: list[str]
    previous_scopes: list[str]
    added: list[str]
    removed: list[str]
    widened: bool


class RevokedEvent(_EventCommon, frozen=True, tag="Revoked", tag_field="type"):
    reason: str


class ExpiredEvent(_EventCommon, frozen=True, tag="Expired", tag_field="type"):
    expires_at: datetime


class RotatedEvent(_EventCommon, frozen=True, tag="Rotated", tag_field="type"):
    successor_id: str
    retires_at: datetime


class SuspendedEvent(_EventCommon, frozen=True, tag="Suspended", tag_field="type"):
    reason: str = ""


class ResumedEvent(_EventCommon, frozen=True, tag="Resumed", tag_field="type"):
    pass


HistoryEvent = (
    MintedEvent
    | ScopesSetEvent
    | RevokedEvent
    | ExpiredEvent
    | RotatedEvent
    | SuspendedEvent
    | ResumedEvent
)


class History(msgspec.Struct, frozen=True):
    """A key's events, oldest first."""

    key_id: str
    events: list[HistoryEvent]


class KeyCounts(msgspec.Struct, frozen=True):
    """The caller's keys by status; expiring_soon counts live keys that expire within 7 days."""

    active: int
    revoked: int
    expired: int
    suspended: int = 0
    blocked: int = 0
    rotated: int = 0
    expiring_soon: int = 0


class DayUsage(msgspec.Struct, frozen=True):
    day: date
    requests: int


class KeyUsage(msgspec.Struct, frozen=True):
    """One key's use over the last 30 days; last_used_at null means never used."""

    key_id: str
    name: str
    prefix: str
    last_used_at: datetime | None
    requests: int
    days: list[DayUsage]
    expires_at: datetime | None = None


class WhoAmI(msgspec.Struct, frozen=True):
    """The caller of this request: a key (its id and scopes) or a signed-in user (all scopes)."""

    user_id: str
    via: Literal["token", "session"]
    key_id: str | None
    scopes: list[str]
    # When the calling key expires; null for a key that never does, or a session.
    expires_at: datetime | None = None


class Account(msgspec.Struct, frozen=True):
    user_id: str
    keys: KeyCounts
    usage: list[KeyUsage]
    # When the calling key expires; null for a key that never does, or a session.
    expires_at: datetime | None = None


class VerifyResponse(msgspec.Struct, frozen=True, omit_defaults=True):
    """Whether the token may do what was asked. Who holds it and what it may do are told only to
    a service with the verify secret, or to the signed-in owner of the token."""

    valid: bool
    code: Code
    key_id: str | UnsetType | None = UNSET
    owner_id: str | UnsetType | None = UNSET
    scopes: list[str] | UnsetType | None = UNSET
    expires_at: datetime | UnsetType | None = UNSET
    missing_scopes: list[str] | UnsetType | None = UNSET
    # When a rotated key stops (its grace), for those told its expiry.
    retires_at: datetime | UnsetType | None = UNSET
    # To a service: the store position the answer reflects at least, so that a cache following
    # the lifecycle feed (`GET /v1/events/stream`) can tell an answer older than an event.
    position: int | UnsetType = UNSET


class ServiceEvent(msgspec.Struct, frozen=True, omit_defaults=True):
    """One event of the services' lifecycle feed: what a cache of verify answers needs, no more.
    `PolicyChanged` (the lifetime policy) has no key: it may change any key's answer."""

    type: str
    position: int
    at: datetime
    key_id: str | None = None


class Health(msgspec.Struct, frozen=True):
    status: str


class Readiness(msgspec.Struct, frozen=True):
    ready: bool
    backend: str
    position: int
    keys: int
    lag_seconds: float


class _WebhookEventCommon(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What every webhook endpoint's event shows in the audit trail: as a key's event does, with
    the endpoint's id in place of a key's."""

    at: datetime
    actor: str
    version: int
    context: dict[str, str] | None = None
    position: int | None = None
    webhook_id: str | None = None
    chain: str | None = None
    actor_kind: ActorKind | None = None
    actor_id: str | None = None


class WebhookRegisteredEvent(
    _WebhookEventCommon, frozen=True, tag="WebhookRegistered", tag_field="type"
):
    """An endpoint was registered to receive these event types (never its signing secret)."""

    url: str
    event_types: list[str]


class WebhookDisabledEvent(
    _WebhookEventCommon, frozen=True, tag="WebhookDisabled", tag_field="type"
):
    """Deliveries stopped: the endpoint failed past the retry window."""

    reason: str


class WebhookDeletedEvent(_WebhookEventCommon, frozen=True, tag="WebhookDeleted", tag_field="type"):
    pass


WebhookEvent = WebhookRegisteredEvent | WebhookDisabledEvent | WebhookDeletedEvent
# The audit trail: every key's events, and the webhook endpoints that receive them.
AuditEvent = HistoryEvent | WebhookEvent


class AuditPage(msgspec.Struct, frozen=True):
    """A page of the caller's audit trail; pass `next` as `cursor` for the page after."""

    events: list[AuditEvent]
    next: str | None


class ExportLine(msgspec.Struct, frozen=True):
    """One line of an NDJSON export: the event, its store position and its chain value."""

    position: int
    chain: str
    type: str
    key_id: str
    owner_id: str
    at: datetime
    actor: str
    event: dict[str, Any]


class Interval(msgspec.Struct, frozen=True):
    start: datetime
    end: datetime


class ExposedKey(msgspec.Struct, frozen=True):
    id: str
    name: str
    prefix: str
    intervals: list[Interval]


class Exposure(msgspec.Struct, frozen=True):
    """Every key of the caller that held a scope at any moment in a window, and when."""

    scope: str
    since: datetime
    until: datetime
    keys: list[ExposedKey]


class ChainCheck(msgspec.Struct, frozen=True):
    """The audit hash chain recomputed from the stored events."""

    ok: bool
    checked: int
    head_position: int
    head_chain: str
    first_bad_position: int | None
    reason: str


# Webhooks

EventTypeName = Annotated[
    Literal[
        "Minted",
        "ScopesSet",
        "Revoked",
        "Expired",
        "Rotated",
        "Suspended",
        "Resumed",
        "ExpiringSoon",
    ],
    Meta(
        description="A key event type (Minted, ScopesSet, Revoked, Expired, Rotated, Suspended, "
        "Resumed) or ExpiringSoon (7 days and 1 day before a key's expiry)",
    ),
]


class WebhookRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Register a webhook endpoint."""

    url: Annotated[
        str,
        Meta(
            max_length=2048,
            pattern=r"^https?://[!-~]+$",
            description="An https:// URL to POST events to, at a public address (http only to "
            "loopback, when the operator allows it); no credentials or fragment",
        ),
    ]
    event_types: Annotated[list[EventTypeName], Meta(min_length=1, max_length=16)]


class Webhook(msgspec.Struct, frozen=True):
    """A webhook endpoint (never its secret)."""

    id: str
    url: str
    event_types: list[str]
    status: Annotated[str, Meta(description="enabled, or disabled (see `disabled_reason`)")]
    created_at: datetime
    disabled_reason: str | None = None


class RegisteredWebhook(msgspec.Struct, frozen=True):
    """A new endpoint and its signing secret, shown this once."""

    webhook: Webhook
    secret: Annotated[
        str,
        Meta(description="The Standard Webhooks signing secret (whsec_…): shown only now"),
    ]


class WebhookList(msgspec.Struct, frozen=True):
    """The caller's webhook endpoints, oldest first."""

    webhooks: list[Webhook]


class WebhookDelivery(msgspec.Struct, frozen=True):
    """One message to an endpoint and what became of it."""

    id: Annotated[str, Meta(description="The webhook-id header: the same on every attempt")]
    type: str
    position: int | None
    status: Annotated[str, Meta(description="pending, delivered or failed")]
    attempts: int
    created_at: datetime
    first_attempt_at: datetime | None = None
    last_status_code: int | None = None
    last_error: str | None = None
    next_attempt_at: datetime | None = None
    delivered_at: datetime | None = None


class WebhookDeliveryList(msgspec.Struct, frozen=True):
    """An endpoint's latest deliveries, newest first."""

    deliveries: list[WebhookDelivery]


class ExpiringSoonNotice(msgspec.Struct, frozen=True, tag="ExpiringSoon", tag_field="type"):
    """A live key expires within `days` days (sent 7 days and 1 day before)."""

    key: Key
    days: int
    expires_at: datetime


class WebhookMessage(msgspec.Struct, frozen=True):
    """The body of every webhook delivery (Standard Webhooks' shape)."""

    type: str
    timestamp: datetime
    data: HistoryEvent | ExpiringSoonNotice
