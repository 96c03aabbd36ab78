"""Auth.js session cookies: what api.authjs accepts, rejects and produces.

The vectors in tests/fixtures/authjs (a copy of shared/fixtures/authjs) were made and
cross-checked by the real @auth/core 0.41.3; every one must come out the way the library says.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import pickle
import struct
import uuid
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.authjs import (
    SessionClaims,
    SessionCookieCodec,
    SessionCookieError,
    _derive,
)
from api.session_cookies import SESSION_COOKIE_NAMES, find_session_cookie, parse_cookie_header

SECURE, PLAIN = SESSION_COOKIE_NAMES
S1 = "test-secret-1-a4f1c0e2b7d94c55a1e3f0b2c8d7e6f5"
S2 = "test-secret-2-0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a"
OLD = "rotation-old-secret-5e4d3c2b1a09f8e7d6c5b4a39281"
NEW = "rotation-new-secret-1f2e3d4c5b6a79880a1b2c3d4e5f"
NOW = 1_800_000_000
DAY = 24 * 3600
REASONS = {"expired", "wrong_secret", "invalid"}
MESSAGES = {
    str(SessionCookieError("expired")),
    str(SessionCookieError("wrong_secret")),
    str(SessionCookieError("invalid")),
}

VECTORS_PATH = Path(
    os.environ.get("ANTHRA_AUTHJS_VECTORS")
    or Path(__file__).resolve().parents[1] / "fixtures/authjs/vectors.json"
)
VECTOR_FILE: dict[str, Any] = json.loads(VECTORS_PATH.read_text())
VECTORS: list[dict[str, Any]] = VECTOR_FILE["vectors"]


def vector_params(vectors: list[dict[str, Any]]) -> list[Any]:
    """One pytest param per vector, named by its id."""
    return [pytest.param(v, id=v["id"]) for v in vectors]


def codec_for(secret: str | list[str]) -> SessionCookieCodec:
    """A codec from a vector's secret, which is a string or a list."""
    return SessionCookieCodec([secret] if isinstance(secret, str) else secret)


# -- Independent JWE building blocks, so tests can make tokens encode() never would --------


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def compact_json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def seal_cbc(
    key: bytes,
    header: dict[str, Any],
    plaintext: bytes,
    *,
    pad: bool = True,
    encrypted_key: str = "",
    iv: bytes | None = None,
    extra_ciphertext: bytes = b"",
) -> str:
    """An A256CBC-HS512 compact JWE with a correct tag over whatever it is given."""
    header_b64 = b64(compact_json(header))
    iv = os.urandom(16) if iv is None else iv
    if pad:
        n = 16 - len(plaintext) % 16
        plaintext += bytes([n]) * n
    # A wrong-length IV still goes into the tag as given; AES itself needs 16 bytes.
    cbc_iv = iv[:16].ljust(16, b"\0")
    encryptor = Cipher(algorithms.AES(key[32:]), modes.CBC(cbc_iv)).encryptor()
    ciphertext = encryptor.update(plaintext) + encryptor.finalize() + extra_ciphertext
    aad = header_b64.encode()
    mac_input = aad + iv + ciphertext + struct.pack(">Q", len(aad) * 8)
    tag = hmac.new(key[:32], mac_input, hashlib.sha512).digest()[:32]
    return ".".join((header_b64, encrypted_key, b64(iv), b64(ciphertext), b64(tag)))


def open_cbc(key: bytes, token: str) -> bytes:
    """The plaintext of an A256CBC-HS512 JWE, for inspecting what encode() wrote."""
    _, _, iv, ciphertext, _ = token.split(".")
    decryptor = Cipher(algorithms.AES(key[32:]), modes.CBC(unb64(iv))).decryptor()
    padded = decryptor.update(unb64(ciphertext)) + decryptor.finalize()
    return padded[: -padded[-1]]


def seal_gcm(key: bytes, header: dict[str, Any], plaintext: bytes) -> str:
    """An A256GCM compact JWE, like the one jose makes directly."""
    header_b64 = b64(compact_json(header))
    iv = os.urandom(12)
    sealed = AESGCM(key).encrypt(iv, plaintext, header_b64.encode())
    return ".".join((header_b64, "", b64(iv), b64(sealed[:-16]), b64(sealed[-16:])))


def token(
    claims: Any,
    *,
    secret: str = S1,
    cookie_name: str = PLAIN,
    header: dict[str, Any] | None = None,
    raw_payload: bytes | None = None,
    **seal_options: Any,
) -> str:
    """A CBC token for the given claims with Auth.js's header plus any extra header fields."""
    key, kid = _derive(secret, cookie_name)
    full_header = {"alg": "dir", "enc": "A256CBC-HS512", "kid": kid, **(header or {})}
    payload = compact_json(claims) if raw_payload is None else raw_payload
    return seal_cbc(key, full_header, payload, **seal_options)


def outcome(codec: SessionCookieCodec, cookie_name: str, value: str, now: float) -> str:
    """The string "valid", or the reason the codec gave for rejecting the value."""
    try:
        codec.decode(cookie_name, value, now=now)
    except SessionCookieError as exc:
        return exc.reason
    return "valid"


# -- Vectors from the real @auth/core -------------------------------------------------------


def test_vectors_come_from_auth_core_0_41_3_and_cover_every_outcome() -> None:
    assert VECTOR_FILE["auth_core_version"] == "0.41.3"
    assert {v["expect"] for v in VECTORS} == {"valid", *REASONS}


@pytest.mark.parametrize("vector", vector_params(VECTORS))
def test_vector_cookie_header_yields_its_cookie(vector: dict[str, Any]) -> None:
    found = find_session_cookie(parse_cookie_header(vector["cookie_header"]))
    assert found == (vector["cookie_name"], vector["cookie_value"])


@pytest.mark.parametrize("vector", vector_params(VECTORS))
def test_vector_decodes_to_the_expected_outcome(vector: dict[str, Any]) -> None:
    codec = codec_for(vector["secret"])
    found = find_session_cookie(parse_cookie_header(vector["cookie_header"]))
    assert found is not None
    name, value = found
    # Every vector is judged at its generation instant; the tolerance ones depend on it.
    if vector["expect"] == "valid":
        claims = codec.decode(name, value, now=vector["now"])
        expected = vector["expected_claims"]
        assert claims.user_id == expected["sub"]
        assert claims.email == expected.get("email")
        assert claims.name == expected.get("name")
        assert claims.expires_at == expected["exp"]
    else:
        with pytest.raises(SessionCookieError) as caught:
            codec.decode(name, value, now=vector["now"])
        assert caught.value.reason == vector["expect"]


@pytest.mark.parametrize("vector", vector_params(VECTORS))
def test_vector_derived_keys_and_kids_match(vector: dict[str, Any]) -> None:
    for entry in vector["derived_keys"]:
        key, kid = _derive(entry["secret"], vector["cookie_name"])
        assert key.hex() == entry["key_hex"]
        assert kid == entry["kid"]


ENCODED_VECTORS = [
    v
    for v in VECTORS
    if v["expect"] == "valid"
    and v["encoded_with"]["maxAge"] is not None
    and v["encoded_with"]["salt"] == v["cookie_name"]
]


@pytest.mark.parametrize("vector", vector_params(ENCODED_VECTORS))
def test_encode_matches_auth_core_byte_for_byte_but_iv_and_jti(vector: dict[str, Any]) -> None:
    encoded_with = vector["encoded_with"]
    codec = codec_for(encoded_with["secret"])
    ours = codec.encode(
        vector["token_claims"], vector["cookie_name"], encoded_with["maxAge"], now=vector["now"]
    )
    # Same protected header segment, hence same AAD and kid.
    assert ours.split(".")[0] == vector["cookie_value"].split(".")[0]
    secret = encoded_with["secret"]
    first_secret = secret if isinstance(secret, str) else secret[0]
    plaintext = open_cbc(_derive(first_secret, vector["cookie_name"])[0], ours)
    jti = json.loads(plaintext)["jti"]
    assert plaintext == compact_json({**vector["expected_claims"], "jti": jti})


# -- Encode and decode round trip ----------------------------------------------------------


def test_encode_then_decode_round_trips() -> None:
    codec = SessionCookieCodec([S1])
    value = codec.encode({"sub": "u1", "email": "e@example.com", "name": "Eve"}, SECURE, DAY, NOW)
    assert codec.decode(SECURE, value, now=NOW) == SessionClaims(
        user_id="u1", email="e@example.com", name="Eve", expires_at=float(NOW + DAY)
    )


def test_encode_writes_auth_core_header_and_claims_layout() -> None:
    codec = SessionCookieCodec([S1, S2])
    value = codec.encode({"sub": "u1", "exp": 1}, PLAIN, 3600, now=NOW + 0.75)
    header_b64, encrypted_key, iv, ciphertext, tag = value.split(".")
    key, kid = _derive(S1, PLAIN)
    assert unb64(header_b64) == compact_json({"alg": "dir", "enc": "A256CBC-HS512", "kid": kid})
    assert encrypted_key == ""
    assert len(unb64(iv)) == 16
    assert len(unb64(tag)) == 32
    assert len(unb64(ciphertext)) % 16 == 0
    claims = json.loads(open_cbc(key, value))
    # The caller's keys first (an existing exp keeps its place), then iat, exp, jti.
    assert list(claims) == ["sub", "exp", "iat", "jti"]
    assert claims["iat"] == NOW
    assert claims["exp"] == NOW + 3600
    assert uuid.UUID(claims["jti"]).version == 4


def test_encode_leaves_the_callers_claims_alone_and_varies_iv_and_jti() -> None:
    codec = SessionCookieCodec([S1])
    claims = {"sub": "u1"}
    first = codec.encode(claims, PLAIN, DAY, NOW)
    second = codec.encode(claims, PLAIN, DAY, NOW)
    assert claims == {"sub": "u1"}
    assert first.split(".")[2] != second.split(".")[2]
    key = _derive(S1, PLAIN)[0]
    assert json.loads(open_cbc(key, first))["jti"] != json.loads(open_cbc(key, second))["jti"]


def test_encode_for_a_name_outside_the_session_names_still_round_trips() -> None:
    codec = SessionCookieCodec([S1])
    value = codec.encode({"sub": "u1"}, "custom.session", DAY, NOW)
    assert codec.decode("custom.session", value, now=NOW).user_id == "u1"
    assert outcome(codec, PLAIN, value, NOW) == "wrong_secret"


# -- Secret rotation ---------------------------------------------------------------------------


def test_rotation_encodes_with_the_first_secret_and_decodes_by_kid() -> None:
    value = SessionCookieCodec([NEW, OLD]).encode({"sub": "u1"}, PLAIN, DAY, NOW)
    assert json.loads(unb64(value.split(".")[0]))["kid"] == _derive(NEW, PLAIN)[1]
    assert SessionCookieCodec([OLD, NEW]).decode(PLAIN, value, now=NOW).user_id == "u1"
    assert outcome(SessionCookieCodec([NEW]), PLAIN, value, NOW) == "valid"


def test_rotation_rejects_a_token_whose_secret_was_dropped() -> None:
    value = SessionCookieCodec([OLD]).encode({"sub": "u1"}, PLAIN, DAY, NOW)
    assert outcome(SessionCookieCodec([NEW, S1]), PLAIN, value, NOW) == "wrong_secret"


# -- The cookie name is the HKDF salt ----------------------------------------------------------


@pytest.mark.parametrize(
    ("made_for", "sent_as"),
    [(PLAIN, SECURE), (SECURE, PLAIN)],
    ids=["plain-as-secure", "secure-as-plain"],
)
def test_cookie_sent_under_the_other_name_fails_like_a_wrong_secret(
    made_for: str, sent_as: str
) -> None:
    codec = SessionCookieCodec([S1])
    value = codec.encode({"sub": "u1"}, made_for, DAY, NOW)
    assert outcome(codec, sent_as, value, NOW) == "wrong_secret"


# -- Expiry and not-before, with jose's 15 s tolerance and whole-second clock ------------------


@pytest.mark.parametrize(
    ("exp", "expected"),
    [
        (NOW + DAY, "valid"),
        (NOW - 14, "valid"),
        (NOW - 15, "expired"),
        (NOW - 16, "expired"),
        (NOW - 14.5, "valid"),
        ("soon", "invalid"),
        (True, "invalid"),
        (None, "invalid"),
    ],
    ids=["future", "14s-ago", "15s-ago", "16s-ago", "fractional", "string", "bool", "null"],
)
def test_exp_is_rejected_once_it_is_15_seconds_past(exp: Any, expected: str) -> None:
    value = token({"sub": "u1", "exp": exp})
    assert outcome(SessionCookieCodec([S1]), PLAIN, value, NOW) == expected


def test_the_clock_is_floored_to_whole_seconds_like_jose() -> None:
    # Only a fractional exp can tell: unfloored, NOW + 0.9 would already reject it.
    codec = SessionCookieCodec([S1])
    value = token({"sub": "u1", "exp": NOW - 14.5})
    assert outcome(codec, PLAIN, value, NOW + 0.9) == "valid"
    assert outcome(codec, PLAIN, value, NOW + 1) == "expired"


def test_a_token_without_exp_is_valid_with_no_expiry() -> None:
    claims = SessionCookieCodec([S1]).decode(PLAIN, token({"sub": "u1"}), now=NOW)
    assert claims.expires_at is None


@pytest.mark.parametrize(
    ("nbf", "expected"),
    [(NOW - DAY, "valid"), (NOW + 15, "valid"), (NOW + 16, "invalid"), ("now", "invalid")],
    ids=["past", "15s-ahead", "16s-ahead", "string"],
)
def test_nbf_is_checked_with_the_same_tolerance(nbf: Any, expected: str) -> None:
    value = token({"sub": "u1", "nbf": nbf, "exp": NOW + DAY})
    assert outcome(SessionCookieCodec([S1]), PLAIN, value, NOW) == expected


@pytest.mark.parametrize(
    ("iat", "expected"),
    [(NOW + 10 * DAY, "valid"), (0, "valid"), ("yesterday", "invalid")],
    ids=["future", "epoch", "string"],
)
def test_iat_is_only_type_checked(iat: Any, expected: str) -> None:
    value = token({"sub": "u1", "iat": iat})
    assert outcome(SessionCookieCodec([S1]), PLAIN, value, NOW) == expected


# -- Claims ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "claims",
    [{}, {"sub": 42}, {"sub": None}, {"sub": ""}, {"sub": ["u1"]}, {"sub": "\ud800"}],
    ids=["missing", "number", "null", "empty", "list", "lone-surrogate"],
)
def test_a_claims_set_without_a_usable_string_sub_is_invalid(claims: dict[str, Any]) -> None:
    value = token(claims, raw_payload=json.dumps(claims).encode())
    assert outcome(SessionCookieCodec([S1]), PLAIN, value, NOW) == "invalid"


def test_claims_are_read_like_text_decoder_which_drops_a_leading_bom() -> None:
    value = token(None, raw_payload=b'\xef\xbb\xbf{"sub":"u1"}')
    assert SessionCookieCodec([S1]).decode(PLAIN, value, now=NOW).user_id == "u1"


def test_header_copies_of_claims_are_fine_when_they_agree() -> None:
    claims = {"sub": "u1", "iss": "https://app", "aud": ["a", "b"]}
    value = token(claims, header={"sub": "u1", "iss": "https://app", "aud": ["a", "b"]})
    assert SessionCookieCodec([S1]).decode(PLAIN, value, now=NOW).user_id == "u1"


def test_email_and_name_that_are_not_strings_read_as_absent() -> None:
    value = token({"sub": "u1", "email": 7, "name": {"first": "A"}})
    claims = SessionCookieCodec([S1]).decode(PLAIN, value, now=NOW)
    assert (claims.email, claims.name) == (None, None)


# -- A256GCM without kid (accepted by @auth/core decode, never made by its encode) -------------


def test_gcm_without_kid_tries_every_secret() -> None:
    key = _derive(S2, PLAIN, 32)[0]
    value = seal_gcm(key, {"alg": "dir", "enc": "A256GCM"}, compact_json({"sub": "u1"}))
    assert SessionCookieCodec([S1, S2]).decode(PLAIN, value, now=NOW).user_id == "u1"
    assert outcome(SessionCookieCodec([S1]), PLAIN, value, NOW) == "wrong_secret"


def test_gcm_with_a_kid_uses_the_sha256_thumbprint_of_the_32_byte_key() -> None:
    key, kid = _derive(S2, PLAIN, 32)
    value = seal_gcm(key, {"alg": "dir", "enc": "A256GCM", "kid": kid}, compact_json({"sub": "u1"}))
    assert SessionCookieCodec([S1, S2]).decode(PLAIN, value, now=NOW).user_id == "u1"
    assert outcome(SessionCookieCodec([S1]), PLAIN, value, NOW) == "wrong_secret"


def test_cbc_without_kid_also_tries_every_secret() -> None:
    key = _derive(S2, PLAIN)[0]
    value = seal_cbc(key, {"alg": "dir", "enc": "A256CBC-HS512"}, compact_json({"sub": "u1"}))
    assert SessionCookieCodec([S1, S2]).decode(PLAIN, value, now=NOW).user_id == "u1"


# -- Malformed tokens are "invalid", whatever is wrong with them -------------------------------


def _swap_segment(value: str, index: int, replacement: str) -> str:
    parts = value.split(".")
    parts[index] = replacement
    return ".".join(parts)


def _flip_first_char(segment: str) -> str:
    return ("B" if segment[0] == "A" else "A") + segment[1:]


GOOD = token({"sub": "u1"})
MALFORMED = {
    "empty": "",
    "four-segments": GOOD.rsplit(".", 1)[0],
    "six-segments": GOOD + ".AAAA",
    "header-not-base64": _swap_segment(GOOD, 0, "eyJ!"),
    "header-impossible-length": _swap_segment(GOOD, 0, "eyJhb"),
    "header-not-json": _swap_segment(GOOD, 0, b64(b"{alg: dir}")),
    "header-json-array": _swap_segment(GOOD, 0, b64(b'["dir"]')),
    "header-empty": _swap_segment(GOOD, 0, ""),
    "header-deeply-nested": _swap_segment(GOOD, 0, b64(b"[" * 100_000)),
    "padded-base64": _swap_segment(GOOD, 4, GOOD.split(".")[4] + "="),
    "standard-base64-alphabet": _swap_segment(GOOD, 3, GOOD.split(".")[3][:-2] + "+/"),
    "alg-a256kw": token({"sub": "u1"}, header={"alg": "A256KW"}),
    "alg-missing": token({"sub": "u1"}, header={"alg": None}),
    "enc-a128cbc": token({"sub": "u1"}, header={"enc": "A128CBC-HS256"}),
    "enc-list": token({"sub": "u1"}, header={"enc": ["A256GCM"]}),
    "zip-header": token({"sub": "u1"}, header={"zip": "DEF"}),
    "crit-header": token({"sub": "u1"}, header={"crit": ["b64"], "b64": False}),
    "encrypted-key-present": token({"sub": "u1"}, encrypted_key=b64(b"k" * 32)),
    "iv-too-short": token({"sub": "u1"}, iv=b"\1" * 12),
    "tag-truncated": _swap_segment(GOOD, 4, b64(unb64(GOOD.split(".")[4])[:16])),
    "tag-flipped": _swap_segment(GOOD, 4, _flip_first_char(GOOD.split(".")[4])),
    "ciphertext-flipped": _swap_segment(GOOD, 3, _flip_first_char(GOOD.split(".")[3])),
    "ciphertext-not-block-sized": _swap_segment(GOOD, 3, GOOD.split(".")[3] + "AA"),
    "ciphertext-empty": _swap_segment(GOOD, 3, ""),
    "claims-not-json": token(None, raw_payload=b"sub=u1"),
    "claims-json-array": token(["sub", "u1"]),
    "claims-json-null": token(None),
    "claims-nan-exp": token(None, raw_payload=b'{"sub":"u1","exp":NaN}'),
    "bad-pkcs7-padding": token(None, raw_payload=b'{"sub":"u1"}' + b"\x00" * 4, pad=False),
    # Authentic (correct tag) but not whole AES blocks: only a key holder could make it.
    "authentic-ciphertext-not-block-sized": token({"sub": "u1"}, extra_ciphertext=b"\1\2\3"),
    # jose rejects a header iss/sub/aud that disagrees with the claim it copies.
    "header-sub-mismatch": token({"sub": "u1"}, header={"sub": "u2"}),
    "header-aud-mismatch": token({"sub": "u1", "aud": "app"}, header={"aud": "other"}),
    "header-aud-without-claim": token({"sub": "u1"}, header={"aud": "app"}),
}


@pytest.mark.parametrize("value", list(MALFORMED.values()), ids=list(MALFORMED))
def test_malformed_token_is_invalid(value: str) -> None:
    assert outcome(SessionCookieCodec([S1]), PLAIN, value, NOW) == "invalid"


def test_the_malformed_table_is_malformed_only_where_it_says() -> None:
    # Guards the table above: the token it starts from is good.
    assert outcome(SessionCookieCodec([S1]), PLAIN, GOOD, NOW) == "valid"


def test_an_unknown_kid_is_a_wrong_secret_even_if_the_rest_is_garbage() -> None:
    value = _swap_segment(token({"sub": "u1"}, header={"kid": "someone-else"}), 2, "!!")
    assert outcome(SessionCookieCodec([S1]), PLAIN, value, NOW) == "wrong_secret"


# -- Rejections never reveal the cookie --------------------------------------------------------


# (secrets, cookie name, value, now) for every way a cookie gets rejected.
REJECTED: dict[str, tuple[str | list[str], str, str, int]] = {
    **{name: (S1, PLAIN, value, NOW) for name, value in MALFORMED.items()},
    **{
        f"vector-{v['id']}": (v["secret"], v["cookie_name"], v["cookie_value"], v["now"])
        for v in VECTORS
        if v["expect"] != "valid"
    },
    "expired": (S1, PLAIN, token({"sub": "u1", "exp": NOW - DAY}), NOW),
    "wrong-secret": (S1, PLAIN, token({"sub": "u1"}, secret=S2), NOW),
}


@pytest.mark.parametrize("case", list(REJECTED.values()), ids=list(REJECTED))
def test_rejection_messages_never_contain_the_cookie(
    case: tuple[str | list[str], str, str, int],
) -> None:
    secret, cookie_name, value, now = case
    with pytest.raises(SessionCookieError) as caught:
        codec_for(secret).decode(cookie_name, value, now=now)
    exc = caught.value
    assert str(exc) in MESSAGES
    assert exc.args == (exc.reason,)
    # No 8-character stretch of any segment shows up in the message or repr.
    for piece in value.split("."):
        for start in range(len(piece) - 7):
            assert piece[start : start + 8] not in repr(exc)
    # Nothing chained either: a logged traceback must not carry a decoder's complaint.
    assert exc.__cause__ is None
    assert exc.__context__ is None


def test_session_cookie_error_pickles_and_knows_only_three_reasons() -> None:
    copy = pickle.loads(pickle.dumps(SessionCookieError("expired")))  # noqa: S301
    assert copy.reason == "expired"
    with pytest.raises(ValueError, match="unknown reason"):
        SessionCookieError("nope")  # type: ignore[arg-type]


# -- Codec construction ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "secrets", [[], [""], [S1, ""], (None,)], ids=["none", "empty", "one-empty", "not-a-string"]
)
def test_codec_needs_non_empty_string_secrets(secrets: Any) -> None:
    with pytest.raises(ValueError, match="secret"):
        SessionCookieCodec(secrets)


def test_codec_refuses_a_bare_string_which_would_be_one_secret_per_character() -> None:
    with pytest.raises(TypeError):
        SessionCookieCodec(S1)


# -- Finding the session cookie among the request's cookies ------------------------------------


def test_no_session_cookie_is_none() -> None:
    assert find_session_cookie({}) is None
    assert find_session_cookie({"theme": "dark", "authjs.csrf-token": "x"}) is None


def test_plain_and_secure_names_are_found_and_secure_wins() -> None:
    assert find_session_cookie({PLAIN: "p"}) == (PLAIN, "p")
    assert find_session_cookie({SECURE: "s"}) == (SECURE, "s")
    assert find_session_cookie({PLAIN: "p", SECURE: "s"}) == (SECURE, "s")


def test_chunks_join_in_numeric_order() -> None:
    # Twelve pieces, shuffled, so ".10" must sort after ".9".
    pieces = {f"{SECURE}.{i}": f"<{i}>" for i in (11, 3, 0, 10, 1, 2, 9, 4, 5, 6, 7, 8)}
    assert find_session_cookie(pieces) == (SECURE, "".join(f"<{i}>" for i in range(12)))


@pytest.mark.parametrize(
    "cookies",
    [
        {f"{PLAIN}.0": "a", f"{PLAIN}.2": "c"},
        {f"{PLAIN}.1": "b", f"{PLAIN}.2": "c"},
        {f"{PLAIN}.0": "a", f"{PLAIN}.1": "", f"{PLAIN}.2": "c"},
    ],
    ids=["gap", "no-zero", "empty-piece-is-a-gap"],
)
def test_a_chunk_run_with_a_gap_is_no_session_cookie(cookies: dict[str, str]) -> None:
    # Joining around a missing piece could only produce a broken token, so there is none.
    assert find_session_cookie(cookies) is None


def test_a_broken_secure_run_falls_back_to_the_plain_name() -> None:
    cookies = {f"{SECURE}.1": "b", PLAIN: "p"}
    assert find_session_cookie(cookies) == (PLAIN, "p")


def test_the_plain_cookie_wins_over_stale_chunks_of_the_same_name() -> None:
    assert find_session_cookie({f"{PLAIN}.0": "a", PLAIN: "p"}) == (PLAIN, "p")


def test_empty_values_and_non_canonical_suffixes_are_ignored() -> None:
    cookies = {PLAIN: "", f"{PLAIN}.0": "a", f"{PLAIN}.01": "x", f"{PLAIN}.x": "y"}
    assert find_session_cookie(cookies) == (PLAIN, "a")


# -- Parsing the Cookie header -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("a=1; b=2", {"a": "1", "b": "2"}),
        ("  a = 1 ;b=2;", {"a": "1", "b": "2"}),
        ("a=1; a=2", {"a": "1"}),
        ('a="quoted"', {"a": "quoted"}),
        ("a=x=y==", {"a": "x=y=="}),
        ("a=%7B%22k%22%7D", {"a": '{"k"}'}),
        ("a=100%; b=%zz; c=%ff", {"a": "100%", "b": "%zz", "c": "%ff"}),
        ("junk; ;;=; =v; a=1", {"a": "1"}),
        ("", {}),
    ],
    ids=[
        "basic",
        "spaces",
        "first-wins",
        "quotes",
        "equals-in-value",
        "percent",
        "bad-percent",
        "junk",
        "empty",
    ],
)
def test_cookie_header_parsing(header: str, expected: dict[str, str]) -> None:
    assert parse_cookie_header(header) == expected


@given(st.text())
def test_cookie_header_parsing_never_raises(header: str) -> None:
    parsed = parse_cookie_header(header)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in parsed.items())


# -- Arbitrary input only ever raises SessionCookieError ---------------------------------------

B64URL = st.text(
    alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", max_size=120
)
SEGMENT = st.one_of(st.text(max_size=40), B64URL, st.binary(max_size=90).map(b64))
JSON_VALUE = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=8,
)
HEADER = st.one_of(
    st.fixed_dictionaries(
        {"alg": st.just("dir"), "enc": st.sampled_from(["A256CBC-HS512", "A256GCM"])},
        optional={"kid": st.one_of(st.just(_derive(S1, PLAIN)[1]), JSON_VALUE)},
    ),
    st.dictionaries(st.sampled_from(["alg", "enc", "kid", "zip", "crit", "sub"]), JSON_VALUE),
    JSON_VALUE,
).map(lambda h: b64(compact_json(h)))
FUZZ_CODEC = SessionCookieCodec([S1, S2])
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def assert_only_session_cookie_error(value: str) -> SessionClaims | None:
    """Decode, letting nothing but a well-formed SessionCookieError out."""
    try:
        return FUZZ_CODEC.decode(PLAIN, value, now=NOW)
    except SessionCookieError as exc:
        rejection = exc
    assert rejection.reason in REASONS
    assert str(rejection) in MESSAGES
    return None


@FUZZ
@given(st.text())
def test_arbitrary_text_only_raises_session_cookie_error(value: str) -> None:
    assert assert_only_session_cookie_error(value) is None


@FUZZ
@given(st.lists(SEGMENT, min_size=5, max_size=5))
def test_arbitrary_five_segment_strings_only_raise_session_cookie_error(parts: list[str]) -> None:
    assert assert_only_session_cookie_error(".".join(parts)) is None


@FUZZ
@given(HEADER, st.lists(SEGMENT, min_size=4, max_size=4))
def test_plausible_headers_with_arbitrary_bodies_only_raise_session_cookie_error(
    header: str, rest: list[str]
) -> None:
    assert assert_only_session_cookie_error(".".join([header, *rest])) is None


@FUZZ
@given(st.data())
def test_a_mutated_good_token_is_rejected_or_still_means_the_same(data: st.DataObject) -> None:
    position = data.draw(st.integers(0, len(GOOD) - 1))
    replacement = data.draw(st.characters(codec="ascii"))
    mutated = GOOD[:position] + replacement + GOOD[position + 1 :]
    claims = assert_only_session_cookie_error(mutated)
    # A change confined to a segment's unused trailing bits decodes to the same bytes.
    assert claims is None or claims.user_id == "u1"


@pytest.mark.parametrize("vector", vector_params(VECTORS))
def test_a_cookie_decoded_again_gets_the_same_outcome(vector: dict[str, Any]) -> None:
    # Good cookies are remembered decrypted: the second decode must judge exactly as the first.
    codec = codec_for(vector["secret"])
    found = find_session_cookie(parse_cookie_header(vector["cookie_header"]))
    assert found is not None
    outcomes = []
    for _ in range(2):
        try:
            outcomes.append(codec.decode(*found, now=vector["now"]))
        except SessionCookieError as e:
            outcomes.append(e.reason)
    assert outcomes[0] == outcomes[1]


def test_a_remembered_cookie_is_still_judged_on_its_times_at_each_use() -> None:
    codec = SessionCookieCodec([S1])
    value = codec.encode({"sub": "u1"}, SECURE, DAY, NOW)
    assert codec.decode(SECURE, value, now=NOW).user_id == "u1"
    with pytest.raises(SessionCookieError) as caught:
        codec.decode(SECURE, value, now=NOW + DAY + 16)  # past @auth/core's 15 s tolerance
    assert caught.value.reason == "expired"
    # A cookie that is not yet valid stays refused until it is, then passes
    later = codec.encode({"sub": "u2", "nbf": NOW + 3600}, SECURE, DAY, NOW)
    for _ in range(2):
        with pytest.raises(SessionCookieError):
            codec.decode(SECURE, later, now=NOW)
    assert codec.decode(SECURE, later, now=NOW + 3600).user_id == "u2"
