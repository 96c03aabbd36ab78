"""Auth.js session cookies (JWT strategy), read and written as @auth/core 0.41.3 does."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import os
import re
import struct
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any, Final, Literal, get_args

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from api.session_cookies import SESSION_COOKIE_NAMES
from infra.authjs_sessions import SessionClaims

_Reason = Literal["expired", "wrong_secret", "invalid"]

_CBC: Final = "A256CBC-HS512"
_GCM: Final = "A256GCM"
# HKDF output length per content encryption, as @auth/core's getDerivedEncryptionKey.
_KEY_LENGTHS: Final = {_CBC: 64, _GCM: 32}
# jose is given clockTolerance: 15 by @auth/core.
_CLOCK_TOLERANCE: Final = 15
_CBC_IV_LENGTH: Final = 16
_CBC_TAG_LENGTH: Final = 32
_GCM_IV_LENGTH: Final = 12
_GCM_TAG_LENGTH: Final = 16

_B64URL: Final = re.compile(r"[A-Za-z0-9_-]*")
# Only canonical indices count as chunks, so "name.01" cannot shadow "name.1".
_MISSING: Final = object()
# Good cookies remembered decrypted (a few MB at most: a cookie is at most 4 KB).
_OPENED_COOKIES: Final = 1024

_MESSAGES: Final[Mapping[str, str]] = {
    "expired": "the session cookie has expired",
    "wrong_secret": "the session cookie was not made with any configured secret",
    "invalid": "the session cookie is malformed or fails its integrity check",
}


class SessionCookieError(Exception):
    """A session cookie was rejected; the message never quotes the cookie."""

    reason: _Reason

    def __init__(self, reason: _Reason) -> None:
        if reason not in get_args(_Reason):
            raise ValueError(f"unknown reason {reason!r}")
        # args stays (reason,) so the exception pickles and reprs without any cookie data.
        super().__init__(reason)
        self.reason = reason

    def __str__(self) -> str:
        return _MESSAGES[self.reason]


class SessionCookieCodec:
    """Decrypts, verifies and mints Auth.js session cookies for a list of secrets."""

    def __init__(self, secrets: Sequence[str]) -> None:
        if isinstance(secrets, str):
            # A bare str is a Sequence[str] too, and would become one secret per character.
            raise TypeError("secrets must be a sequence of strings, not a single string")
        secret_list = list(secrets)
        if not secret_list:
            raise ValueError("at least one secret is required")
        if not all(isinstance(s, str) and s for s in secret_list):
            raise ValueError("secrets must be non-empty strings")
        self._secrets: tuple[str, ...] = tuple(secret_list)
        # HKDF and the thumbprints are derived once here; decode runs on every request.
        self._keyrings: dict[str, _Keyring] = {
            name: _Keyring(self._secrets, name) for name in SESSION_COOKIE_NAMES
        }
        # Cookies that decrypted and verified lately, to their claims: a browser sends the same
        # cookie with each request, and decrypting it is most of a session check. Only good
        # cookies enter (nothing a client sends can fill it with garbage); the times are
        # checked again on every use.
        self._opened: OrderedDict[tuple[str, str], dict[str, Any]] = OrderedDict()
        self._opened_lock = threading.Lock()

    def decode(self, cookie_name: str, value: str, now: float | None = None) -> SessionClaims:
        """Decrypt and verify a cookie value; raise SessionCookieError when it is not good."""
        at = math.floor(time.time() if now is None else now)
        seen = (cookie_name, value)
        with self._opened_lock:
            claims = self._opened.get(seen)
            if claims is not None:
                self._opened.move_to_end(seen)
        if claims is None:
            claims = self._open(cookie_name, value, at)
            if cookie_name in self._keyrings:
                with self._opened_lock:
                    self._opened[seen] = claims
                    if len(self._opened) > _OPENED_COOKIES:
                        self._opened.popitem(last=False)
        else:
            _check_times(claims, at)
        return _session_claims(claims)

    def _open(self, cookie_name: str, value: str, at: int) -> dict[str, Any]:
        """The claims of a cookie that decrypts, verifies and is within its times."""
        parts = value.split(".") if isinstance(value, str) else []
        if len(parts) != 5:
            raise SessionCookieError("invalid")
        header_b64, encrypted_key_b64, iv_b64, ciphertext_b64, tag_b64 = parts

        header_bytes = _b64decode(header_b64)
        header = _json_object(header_bytes) if header_bytes else None
        if header is None or "crit" in header or "zip" in header:
            # No critical extensions are understood, and Auth.js never compresses.
            raise SessionCookieError("invalid")
        enc = header.get("enc")
        if header.get("alg") != "dir" or not isinstance(enc, str) or enc not in _KEY_LENGTHS:
            raise SessionCookieError("invalid")

        # Key choice comes before the remaining segments are read, in jose's order, so an
        # unknown kid reports wrong_secret even when the rest is garbage.
        keyring = self._keyring(cookie_name)
        has_kid = "kid" in header
        if has_kid:
            kid = header["kid"]
            key = keyring.by_kid[enc].get(kid) if isinstance(kid, str) else None
            if key is None:
                raise SessionCookieError("wrong_secret")
            candidates: tuple[bytes, ...] = (key,)
        else:
            candidates = keyring.by_enc[enc]

        if encrypted_key_b64:
            # "dir" means the derived key is the content key; a wrapped key has no place here.
            raise SessionCookieError("invalid")
        iv = _b64decode(iv_b64)
        ciphertext = _b64decode(ciphertext_b64)
        tag = _b64decode(tag_b64)
        if iv is None or ciphertext is None or tag is None:
            raise SessionCookieError("invalid")
        aad = header_b64.encode("ascii")

        plaintext: bytes | None = None
        if enc == _CBC:
            if (
                len(iv) != _CBC_IV_LENGTH
                or len(tag) != _CBC_TAG_LENGTH
                or not ciphertext
                or len(ciphertext) % 16
            ):
                raise SessionCookieError("invalid")
            for key in candidates:
                plaintext = _cbc_open(key, aad, iv, ciphertext, tag)
                if plaintext is not None:
                    break
        else:
            if len(iv) != _GCM_IV_LENGTH or len(tag) != _GCM_TAG_LENGTH:
                raise SessionCookieError("invalid")
            for key in candidates:
                plaintext = _gcm_open(key, aad, iv, ciphertext, tag)
                if plaintext is not None:
                    break
        if plaintext is None:
            # With a kid the key was identified, so a failed tag means tampering; without one
            # every secret was tried and none fits.
            raise SessionCookieError("invalid" if has_kid else "wrong_secret")

        claims = _json_object(plaintext)
        if claims is None:
            raise SessionCookieError("invalid")
        _check_times(claims, at)
        _check_replicated(header, claims)
        _session_claims(claims)
        return claims

    def encode(
        self, claims: Mapping[str, Any], cookie_name: str, max_age: int, now: float | None = None
    ) -> str:
        """A JWE as @auth/core encode() makes it: first secret, A256CBC-HS512, kid header."""
        keyring = self._keyring(cookie_name)
        issued_at = math.floor(time.time() if now is None else now)
        # Same key order as jose's EncryptJWT: the caller's claims, then iat, exp, jti
        # (overwriting in place when the caller already set them).
        payload = dict(claims)
        payload["iat"] = issued_at
        payload["exp"] = issued_at + max_age
        payload["jti"] = str(uuid.uuid4())
        header = {"alg": "dir", "enc": _CBC, "kid": keyring.encode_kid}
        header_b64 = _b64encode(_json_bytes(header))
        iv = os.urandom(_CBC_IV_LENGTH)
        ciphertext, tag = _cbc_seal(keyring.encode_key, header_b64.encode("ascii"), iv, payload)
        return ".".join((header_b64, "", _b64encode(iv), _b64encode(ciphertext), _b64encode(tag)))

    def _keyring(self, cookie_name: str) -> _Keyring:
        keyring = self._keyrings.get(cookie_name)
        # Other names are derived per call and not cached: callers can pass anything here,
        # and an unbounded cache keyed by it would grow without limit.
        return keyring if keyring is not None else _Keyring(self._secrets, cookie_name)


class _Keyring:
    """Every secret's derived keys and kids for one cookie name."""

    __slots__ = ("by_enc", "by_kid", "encode_key", "encode_kid")

    def __init__(self, secrets: Sequence[str], cookie_name: str) -> None:
        self.by_enc: dict[str, tuple[bytes, ...]] = {}
        self.by_kid: dict[str, dict[str, bytes]] = {}
        for enc, length in _KEY_LENGTHS.items():
            derived = [_derive(secret, cookie_name, length) for secret in secrets]
            self.by_enc[enc] = tuple(key for key, _ in derived)
            by_kid: dict[str, bytes] = {}
            for key, kid in derived:
                by_kid.setdefault(kid, key)
            self.by_kid[enc] = by_kid
            if enc == _CBC:
                # @auth/core encrypts with the first secret only.
                self.encode_key, self.encode_kid = derived[0]


def _derive(secret: str, cookie_name: str, length: int = 64) -> tuple[bytes, str]:
    """The HKDF key and its kid for a secret under a cookie name (the name is the salt)."""
    key = HKDF(
        algorithm=hashes.SHA256(),
        length=length,
        salt=cookie_name.encode(),
        info=f"Auth.js Generated Encryption Key ({cookie_name})".encode(),
    ).derive(secret.encode())
    return key, _thumbprint(key)


def _thumbprint(key: bytes) -> str:
    """RFC 7638 thumbprint of an oct JWK, hashed with SHA-(8 x key length) as @auth/core does."""
    jwk = json.dumps({"k": _b64encode(key), "kty": "oct"}, separators=(",", ":"))
    digest = hashlib.new(f"sha{len(key) * 8}", jwk.encode()).digest()
    return _b64encode(digest)


def _cbc_tag(mac_key: bytes, aad: bytes, iv: bytes, ciphertext: bytes) -> bytes:
    """RFC 7518 5.2.2.1 tag: HMAC-SHA-512 over AAD, IV, ciphertext and AAD bit length, halved."""
    mac_input = b"".join((aad, iv, ciphertext, struct.pack(">Q", len(aad) * 8)))
    return hmac.new(mac_key, mac_input, hashlib.sha512).digest()[:_CBC_TAG_LENGTH]


def _cbc_open(key: bytes, aad: bytes, iv: bytes, ciphertext: bytes, tag: bytes) -> bytes | None:
    """Plaintext, or None when the tag does not match this key."""
    mac_key, enc_key = key[:32], key[32:]
    # Authenticate before touching the cipher: decrypting first would be a padding oracle.
    if not hmac.compare_digest(_cbc_tag(mac_key, aad, iv, ciphertext), tag):
        return None
    decryptor = Cipher(algorithms.AES(enc_key), modes.CBC(iv)).decryptor()
    padded = decryptor.update(ciphertext) + decryptor.finalize()
    # Past the tag check only a key holder could have made this, so plain checks are safe here.
    pad = padded[-1]
    if not 1 <= pad <= 16 or padded[-pad:] != bytes([pad]) * pad:
        raise SessionCookieError("invalid")
    return padded[:-pad]


def _cbc_seal(key: bytes, aad: bytes, iv: bytes, payload: Mapping[str, Any]) -> tuple[bytes, bytes]:
    """Ciphertext and tag for a claims set under A256CBC-HS512."""
    mac_key, enc_key = key[:32], key[32:]
    plaintext = _json_bytes(payload)
    pad = 16 - len(plaintext) % 16
    encryptor = Cipher(algorithms.AES(enc_key), modes.CBC(iv)).encryptor()
    ciphertext = encryptor.update(plaintext + bytes([pad]) * pad) + encryptor.finalize()
    return ciphertext, _cbc_tag(mac_key, aad, iv, ciphertext)


def _gcm_open(key: bytes, aad: bytes, iv: bytes, ciphertext: bytes, tag: bytes) -> bytes | None:
    """Plaintext, or None when the tag does not match this key."""
    try:
        return AESGCM(key).decrypt(iv, ciphertext + tag, aad)
    except InvalidTag:
        return None


def _check_times(claims: Mapping[str, Any], now: int) -> None:
    """jose's checks with @auth/core's 15 s tolerance: iat only typed, nbf and exp compared."""
    # now arrives floored to whole seconds, as jose floors its clock before comparing.
    iat = claims.get("iat", _MISSING)
    if iat is not _MISSING and not _is_number(iat):
        raise SessionCookieError("invalid")
    nbf = claims.get("nbf", _MISSING)
    if nbf is not _MISSING and (not _is_number(nbf) or nbf > now + _CLOCK_TOLERANCE):
        raise SessionCookieError("invalid")
    exp = claims.get("exp", _MISSING)
    if exp is not _MISSING:
        if not _is_number(exp):
            raise SessionCookieError("invalid")
        if exp <= now - _CLOCK_TOLERANCE:
            raise SessionCookieError("expired")


def _check_replicated(header: Mapping[str, Any], claims: Mapping[str, Any]) -> None:
    """jose rejects a header iss/sub/aud that differs from the claim it replicates."""
    for name in ("iss", "sub"):
        if name in header and not _js_identical(header[name], claims.get(name, _MISSING)):
            raise SessionCookieError("invalid")
    if "aud" in header and (
        "aud" not in claims or _json_bytes(header["aud"]) != _json_bytes(claims["aud"])
    ):
        raise SessionCookieError("invalid")


def _session_claims(claims: Mapping[str, Any]) -> SessionClaims:
    """The claims this app uses; a missing or empty sub makes the cookie invalid."""
    sub = _well_formed(claims.get("sub"))
    if not sub:
        raise SessionCookieError("invalid")
    exp = claims.get("exp")
    return SessionClaims(
        user_id=sub,
        email=_well_formed(claims.get("email")),
        name=_well_formed(claims.get("name")),
        expires_at=_as_float(exp) if _is_number(exp) else None,
    )


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(segment: str) -> bytes | None:
    """Unpadded base64url to bytes, or None for anything else."""
    if len(segment) % 4 == 1 or not _B64URL.fullmatch(segment):
        return None
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _json_object(data: bytes) -> dict[str, Any] | None:
    """A JSON object parsed like TextDecoder + JSON.parse, or None."""
    # TextDecoder replaces bad UTF-8 and drops a leading BOM instead of failing.
    text = data.decode("utf-8", "replace").removeprefix("\ufeff")
    try:
        parsed = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        # RecursionError: deeply nested arrays in the (unauthenticated) header.
        return None
    return parsed if isinstance(parsed, dict) else None


def _reject_constant(name: str) -> Any:
    # JSON.parse has no NaN or Infinity literals; Python's json accepts them by default.
    raise ValueError(f"{name} is not JSON")


def _json_bytes(value: Any) -> bytes:
    """JSON.stringify output as UTF-8."""
    try:
        return json.dumps(
            value, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        ).encode()
    except UnicodeEncodeError:
        # Lone surrogates: JSON.stringify escapes them, which ensure_ascii also does.
        return json.dumps(value, separators=(",", ":"), allow_nan=False).encode()


def _is_number(value: object) -> bool:
    """typeof value === "number" for a parsed JSON value."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def _as_float(value: Any) -> float:
    try:
        return float(value)
    except OverflowError:
        # A JSON integer beyond double range; JSON.parse reads it as Infinity.
        return math.inf


def _js_identical(a: object, b: object) -> bool:
    """JavaScript's === for parsed JSON values (objects and arrays are never identical)."""
    if a is _MISSING or b is _MISSING or isinstance(a, dict | list) or isinstance(b, dict | list):
        return False
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return a == b


def _well_formed(value: object) -> str | None:
    """A string that can be stored and sent on as UTF-8; lone surrogates make it unusable."""
    if not isinstance(value, str):
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return value
