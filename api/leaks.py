"""`POST /v1/leaks`: leaked tokens reported by a secret-scanning partner (GitHub's format), each
live one revoked at once with reason `leaked` and where it was found.

The report is checked against the configured partners' keys before anything in it is read; a
report that is not theirs revokes nothing (401). The answer labels each reported token by its
sha256 — never the token — as GitHub expects: `true_positive` for a token of this ledger (revoked
now, or already), `false_positive` for anything else. A repeated report changes nothing more.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Annotated, Any

import anyio.to_thread
import msgspec
from litestar import Controller, Request, post
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec

from api import problems
from api.json_body import decode
from api.openapi import LEAK_PARTNER, LEAKS_PATH
from api.problems import ErrorBody
from api.request_context import context_of
from api.schemas import ReportedToken, TokenLabel
from domain.actors import SYSTEM
from infra.leak_reports import KEY_ID_HEADER, SIGNATURE_HEADER, LeakReporters, ReportRefused
from infra.logging import redact
from ledger.key_ledger import KeyLedger

log = logging.getLogger("anthra.leaks")

REASON = "leaked"
MAX_REPORT_BYTES = 1024 * 1024
MAX_TOKENS = 1000
# What of a report's `url` and `source` is kept in the revocation's context.
_MAX_PLACE = 500


Report = Annotated[list[ReportedToken], msgspec.Meta(max_length=MAX_TOKENS)]


def place(text: str) -> str:
    """Where a token was found, safe to keep: no token in it, one line, bounded."""
    printable = "".join(c if c.isprintable() else " " for c in text)
    return redact(printable)[:_MAX_PLACE]


class LeaksController(Controller):
    path = LEAKS_PATH
    tags = ["leaks"]

    @post(
        "/",
        status_code=200,
        request_max_body_size=MAX_REPORT_BYTES,
        security=LEAK_PARTNER,
        responses={
            401: ResponseSpec(ErrorBody, description="Not signed by a configured partner"),
            403: ResponseSpec(ErrorBody, description="Leak reports are off on this ledger"),
            413: ResponseSpec(ErrorBody, description="The report is over 1 MiB"),
        },
    )
    async def report(
        self, request: Request[Any, Any, Any], ledger: NamedDependency[KeyLedger]
    ) -> list[TokenLabel]:
        """Revoke every reported live token (reason `leaked`, where it was found in the
        event's context) and label each report entry, by sha256, true or false positive.

        The body is a JSON array of `{token, type, url, source}` (at most 1,000 entries, 1 MiB),
        signed with ECDSA P-256 over the raw bytes: `Github-Public-Key-Signature` (base64 DER)
        and `Github-Public-Key-Identifier` name the signature and the partner's key."""
        data = await request.body()
        reporters: LeakReporters | None = request.app.state.leak_reporters
        if reporters is None:
            raise problems.AuthProblem(
                403, "insufficient_scope", "leak reports are off: set ANTHRA_LEAK_KEYS_FILE"
            )
        try:
            reporters.check(
                data, request.headers.get(KEY_ID_HEADER), request.headers.get(SIGNATURE_HEADER)
            )
        except ReportRefused as e:
            raise problems.AuthProblem(401, "invalid_request", str(e)) from None
        reported: list[ReportedToken] = decode(data, Report)
        return await anyio.to_thread.run_sync(
            revoke_reported, ledger, reported, context_of(request)
        )


def revoke_reported(
    ledger: KeyLedger, reported: list[ReportedToken], context: dict[str, str]
) -> list[TokenLabel]:
    """Revoke the live tokens of a checked report; label every entry."""
    # A token minted a moment ago on another process is still a token of this ledger.
    ledger.catch_up()
    labels, revoked = [], 0
    for entry in reported:
        record = ledger.index.holder(entry.token)
        if record is not None:
            was_live = not record.revoked
            ledger.revoke(
                record.key_id,
                actor=SYSTEM,
                reason=REASON,
                context=context
                | {"leak_url": place(entry.url), "leak_source": place(entry.source)},
            )
            revoked += was_live
        labels.append(
            TokenLabel(
                token_hash=hashlib.sha256(entry.token.encode("utf-8", "replace")).hexdigest(),
                token_type=entry.type,
                label="true_positive" if record is not None else "false_positive",
            )
        )
    log.info(
        "leak report: %d tokens, %d of this ledger, %d revoked now",
        len(reported),
        sum(1 for label in labels if label.label == "true_positive"),
        revoked,
    )
    return labels
