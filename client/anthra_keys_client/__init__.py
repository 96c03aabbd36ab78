"""The Anthra key ledger's client for token holders, and its `anthra-token` CLI."""

from anthra_keys_client.client import Client
from anthra_keys_client.errors import (
    AnthraError,
    BadRequest,
    Conflict,
    Forbidden,
    MissingCredential,
    NotFound,
    RateLimited,
    Unauthorized,
    Unavailable,
)
from anthra_keys_client.schemas import Key, RotatedKey, Verification, WhoAmI
from anthra_keys_client.version import VERSION

__version__ = VERSION

__all__ = [
    "AnthraError",
    "BadRequest",
    "Client",
    "Conflict",
    "Forbidden",
    "Key",
    "MissingCredential",
    "NotFound",
    "RateLimited",
    "RotatedKey",
    "Unauthorized",
    "Unavailable",
    "Verification",
    "WhoAmI",
    "__version__",
]
