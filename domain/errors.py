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
    """The key is revoked or expired: terminal states take no changes."""

    def __init__(self, key_id: str, status: str) -> None:
        super().__init__(f"key {key_id} is {status}; a {status} key cannot be changed")
        self.key_id = key_id
        self.status = status
