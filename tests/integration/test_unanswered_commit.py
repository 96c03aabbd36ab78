"""A write whose COMMIT goes unanswered past the deadline: the ledger finds out how it ended
rather than guess. Recorded after all, the command succeeds; still unknown, it says so; and
trying it again never records it twice."""

from __future__ import annotations

import time
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import psycopg
import pytest

from infra.backends import backend_for
from ledger.deadline import REQUEST_BUDGET, OutcomeUnknown
from ledger.key_ledger import KeyLedger
from tests.conftest import settings_for

pytestmark = pytest.mark.postgres


@pytest.fixture
def ledger(postgres_url: str) -> Iterator[KeyLedger]:
    ledger = KeyLedger(backend_for(settings_for(postgres_url)).store_env())
    yield ledger
    ledger.close()


def slow_commits(postgres_url: str, seconds: float) -> None:
    """From now on, every COMMIT of events in the test's schema takes `seconds` longer."""
    schema = parse_qs(urlsplit(postgres_url).query)["schema"][0]
    with psycopg.connect(postgres_url.split("?")[0], autocommit=True) as admin:
        admin.execute(
            f'CREATE FUNCTION "{schema}".slow_commit() RETURNS trigger LANGUAGE plpgsql AS '
            f"$$ BEGIN PERFORM pg_sleep({seconds}); RETURN NULL; END $$"
        )
        admin.execute(
            f'CREATE CONSTRAINT TRIGGER slow_commit AFTER INSERT ON "{schema}".ledger_events '
            "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW "
            f'EXECUTE FUNCTION "{schema}".slow_commit()'
        )


def revoked_events(ledger: KeyLedger, key_id: str) -> int:
    return sum(type(e).__name__ == "Revoked" for e in ledger.history(key_id))


def test_a_commit_answered_late_but_recorded_is_a_success(
    ledger: KeyLedger, postgres_url: str
) -> None:
    minted = ledger.mint(
        owner_id="u1", name="k", scopes=["books:read"], expires_in_days=None, actor="user:u1"
    )
    # The COMMIT of the revoke ends a little after the command's deadline
    slow_commits(postgres_url, REQUEST_BUDGET + 0.3)
    record = ledger.revoke(minted.record.key_id, actor="user:u1")
    # The connection was cut waiting for it, yet the ledger found the revoke recorded
    assert record.revoked_at is not None
    assert revoked_events(ledger, str(minted.record.key_id)) == 1
    assert ledger.verify(minted.token, ["books:read"]).code == "invalid_token"


def test_a_commit_still_unanswered_is_reported_as_unknown_and_never_recorded_twice(
    ledger: KeyLedger, postgres_url: str
) -> None:
    minted = ledger.mint(
        owner_id="u1", name="k", scopes=["books:read"], expires_in_days=None, actor="user:u1"
    )
    key_id = str(minted.record.key_id)
    # The COMMIT of the revoke ends well after the command and its check have given up
    slow_commits(postgres_url, REQUEST_BUDGET + 2.0)
    with pytest.raises(OutcomeUnknown):
        ledger.revoke(key_id, actor="user:u1")
    # It was recorded in the end
    deadline = time.monotonic() + 5.0
    while revoked_events(ledger, key_id) == 0:
        assert time.monotonic() < deadline, "the slow COMMIT never landed"
        time.sleep(0.1)
    # Revoking again, as a caller told "unknown" would, finds it revoked and records nothing
    ledger.revoke(key_id, actor="user:u1")
    assert revoked_events(ledger, key_id) == 1
