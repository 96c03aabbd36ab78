"""Typed errors of the ledger's rules; the API maps each to one HTTP status in one place."""

from __future__ import annotations


class LedgerError(Exception):
    """A rule of the ledger refused a command."""


class InvalidInput(LedgerError):
    """A command's input breaks a rule; names the field at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class KeyNotFound(LedgerError):
    """No key with that id (or not one of the caller's)."""

    def __init__(self, key_id: str) -> None:
        super().__init__(f"no key with id {key_id}")
        self.key_id = key_id


class KeyNotActive(LedgerError):
    """The key is revoked, expired or rotated (terminal), or not in a state this change needs."""

    def __init__(self, key_id: str, status: str, change: str = "changed") -> None:
        super().__init__(f"key {key_id} is {status}; a {status} key cannot be {change}")
        self.key_id = key_id
        self.status = status


class KeyAlreadyRotated(LedgerError):
    """The key was rotated already: its successor is named; a retry needs its Idempotency-Key."""

    def __init__(self, key_id: str, successor_id: str) -> None:
        super().__init__(
            f"key {key_id} was already rotated into {successor_id}; to retry a rotation whose "
            "answer was lost, send the same Idempotency-Key as the first attempt"
        )
        self.key_id = key_id
        self.successor_id = successor_id


class WebhookNotFound(LedgerError):
    """No webhook endpoint with that id (or not one of the caller's)."""

    def __init__(self, endpoint_id: str) -> None:
        super().__init__(f"no webhook endpoint with id {endpoint_id}")
        self.endpoint_id = endpoint_id


class TooManyWebhooks(LedgerError):
    """The owner has as many webhook endpoints as one may have."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"at most {limit} webhook endpoints per owner; delete one first")
        self.limit = limit
