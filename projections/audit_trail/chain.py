"""The audit trail's hash chain: each link covers one stored event's identity and bytes.

`chain = sha256(previous chain ‖ position, topic, originator id, version, stored state)`,
starting from 64 zeros, so an edited, deleted or inserted event breaks every link after it.
"""

from __future__ import annotations

import hashlib

from eventsourcing.persistence import Notification

GENESIS = "0" * 64


def canonical(n: Notification) -> bytes:
    """The bytes a chain link covers: the notification's identity and its stored state."""
    return f"{n.id}\n{n.topic}\n{n.originator_id}\n{n.originator_version}\n".encode() + n.state


def link(previous: str, n: Notification) -> str:
    """The chain value at a notification, from the value before it."""
    return hashlib.sha256(bytes.fromhex(previous) + canonical(n)).hexdigest()
