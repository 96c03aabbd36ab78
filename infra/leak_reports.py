"""Leak reports from secret-scanning partners, in GitHub's format: who may report, and checking
that a report is theirs.

GitHub (and any partner speaking its protocol) POSTs a JSON array of `{token, type, url, source}`
and signs the raw body with ECDSA P-256 over SHA-256; the base64 DER signature is in
`Github-Public-Key-Signature` and the signing key's id in `Github-Public-Key-Identifier`. The
verification keys come from a JSON document the operator configures (`ANTHRA_LEAK_KEYS_FILE`:
GitHub publishes it at https://api.github.com/meta/public_keys/secret_scanning; the service reads
only the local copy, never the internet): `{"public_keys": [{"key_identifier", "key"}, …]}` with
PEM keys.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from pathlib import Path

import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from infra.settings import SettingsError

SIGNATURE_HEADER = "Github-Public-Key-Signature"
KEY_ID_HEADER = "Github-Public-Key-Identifier"
MAX_KEY_ID = 200


class _PublicKey(msgspec.Struct):
    key_identifier: str
    key: str
    is_current: bool = True


class _Document(msgspec.Struct):
    public_keys: list[_PublicKey]


class ReportRefused(Exception):
    """A report that is not provably from a configured partner: nothing is revoked."""


class LeakReporters:
    """The partners' verification keys, by their identifiers."""

    def __init__(self, keys: Mapping[str, ec.EllipticCurvePublicKey]) -> None:
        self.keys = dict(keys)

    @classmethod
    def load(cls, path: str, variable: str = "ANTHRA_LEAK_KEYS_FILE") -> LeakReporters:
        """Read the keys document; a missing file or a key that is not P-256 stops the start."""
        try:
            document = msgspec.json.decode(Path(path).read_bytes(), type=_Document)
        except OSError as e:
            raise SettingsError(f"{variable}: cannot read {path} ({e.strerror})") from None
        except msgspec.DecodeError as e:
            raise SettingsError(f"{variable}: not a public keys document ({e})") from None
        keys: dict[str, ec.EllipticCurvePublicKey] = {}
        for entry in document.public_keys:
            try:
                key = serialization.load_pem_public_key(entry.key.encode())
            except ValueError:
                raise SettingsError(
                    f"{variable}: key {entry.key_identifier!r} is not a PEM public key"
                ) from None
            if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
                raise SettingsError(f"{variable}: key {entry.key_identifier!r} is not ECDSA P-256")
            keys[entry.key_identifier] = key
        if not keys:
            raise SettingsError(f"{variable}: the document holds no public keys")
        return cls(keys)

    def check(self, body: bytes, key_id: str | None, signature: str | None) -> None:
        """Raise ReportRefused unless `signature` is a partner's signature of exactly `body`."""
        if not key_id or not signature:
            raise ReportRefused(f"send {KEY_ID_HEADER} and {SIGNATURE_HEADER}")
        key = self.keys.get(key_id) if len(key_id) <= MAX_KEY_ID else None
        if key is None:
            raise ReportRefused("unknown signing key")
        try:
            der = base64.b64decode(signature, validate=True)
            key.verify(der, body, ec.ECDSA(hashes.SHA256()))
        except (binascii.Error, ValueError, InvalidSignature):
            raise ReportRefused("the signature does not match the report") from None
