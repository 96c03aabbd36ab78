"""What a follower hears on the events' channel: the position its own schema's writers reached.
A channel belongs to the whole database, so another deployment's notifications arrive too."""

from __future__ import annotations

import math

from psycopg import Notify

from infra.backends.postgres.listener import _reached


def heard(*payloads: str) -> list[Notify]:
    return [Notify("ledger_events", payload, 1) for payload in payloads]


def test_the_last_position_of_this_schema_is_what_was_reached() -> None:
    assert _reached(heard("3@tenant_a", "5@tenant_a"), "tenant_a") == 5


def test_another_schemas_positions_announce_nothing_here() -> None:
    assert _reached(heard("3@tenant_a", "900@tenant_b"), "tenant_a") == 3
    assert _reached(heard("900@tenant_b"), "tenant_a") == 0


def test_a_bare_position_from_an_earlier_writer_counts() -> None:
    assert _reached(heard("7"), "tenant_a") == 7


def test_a_notification_without_a_position_means_read_the_store() -> None:
    assert _reached(heard(""), "tenant_a") == math.inf
    assert _reached(heard("x@tenant_a"), "tenant_a") == math.inf


def test_nothing_heard_is_nothing_reached() -> None:
    assert _reached([], "tenant_a") == 0
