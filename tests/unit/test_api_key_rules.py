"""The ApiKey aggregate's rules, with no store and no clock but the one passed in."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from urllib.parse import quote
from uuid import uuid4

import pytest

from domain import token
from domain.api_key import ApiKey
from domain.errors import InvalidInput, KeyNotActive

T0 = datetime(2027, 1, 1, tzinfo=UTC)


def mint(**overrides: object) -> ApiKey:
    t = token.generate()
    kwargs: dict[str, object] = {
        "key_id": uuid4(),
        "owner_id": "u1",
        "name": "deploy",
        "token_sha256": token.digest(t).hex(),
        "prefix": token.display_prefix(t),
        "scopes": ["books:read"],
        "expires_in_days": None,
        "actor": "user:u1",
        "at": T0,
    }
    kwargs.update(overrides)
    return ApiKey.mint(**kwargs)  # type: ignore[arg-type]


def event_names(key: ApiKey) -> list[str]:
    return [type(e).__name__ for e in key.collect_events()]


def test_minting_records_minted_with_canonical_scopes() -> None:
    key = mint(scopes=["account:read", "books:read", "account:read"])
    assert key.scopes == ["books:read", "account:read"]
    assert event_names(key) == ["Minted"]
    assert key.status(T0) == "active"


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "   "}, "name"),
        ({"name": "x" * 101}, "name"),
        ({"name": "bad\x00name"}, "name"),
        ({"scopes": []}, "scopes"),
        ({"scopes": ["books:read", "root"]}, "scopes"),
        ({"expires_in_days": 0}, "expires_in_days"),
        ({"expires_in_days": 3651}, "expires_in_days"),
        ({"expires_in_days": -1}, "expires_in_days"),
        ({"expires_in_days": True}, "expires_in_days"),
        ({"owner_id": ""}, "owner_id"),
    ],
)
def test_minting_refuses_bad_input_naming_the_field(
    overrides: dict[str, object], field: str
) -> None:
    with pytest.raises(InvalidInput) as raised:
        mint(**overrides)
    assert raised.value.field == field


@pytest.mark.parametrize("days", [1, 30, 3650])
def test_expiry_is_whole_days_from_the_mint_instant(days: int) -> None:
    key = mint(expires_in_days=days)
    assert key.expires_at == T0 + timedelta(days=days)
    assert key.status(T0 + timedelta(days=days, seconds=-1)) == "active"
    assert key.status(T0 + timedelta(days=days)) == "expired"


def test_setting_scopes_records_the_previous_ones() -> None:
    key = mint()
    key.collect_events()
    assert key.set_scopes(["books:read", "books:write"], "user:u1", T0)
    (event,) = key.collect_events()
    assert type(event).__name__ == "ScopesSet"
    assert event.previous_scopes == ["books:read"]  # type: ignore[attr-defined]
    assert event.scopes == ["books:read", "books:write"]  # type: ignore[attr-defined]
    # The same scopes again change nothing
    assert not key.set_scopes(["books:write", "books:read"], "user:u1", T0)
    assert event_names(key) == []
    # At least one scope, and only known ones
    with pytest.raises(InvalidInput):
        key.set_scopes([], "user:u1", T0)


def test_revoke_is_idempotent_and_terminal() -> None:
    key = mint()
    key.collect_events()
    assert key.revoke("user:u1", "leaked", T0)
    assert not key.revoke("user:u1", "again", T0)
    assert event_names(key) == ["Revoked"]
    assert key.status(T0) == "revoked"
    with pytest.raises(KeyNotActive):
        key.set_scopes(["account:read"], "user:u1", T0)
    assert not key.expire(T0 + timedelta(days=9999))


def test_expire_records_once_and_only_after_the_instant() -> None:
    key = mint(expires_in_days=2)
    key.collect_events()
    assert not key.expire(T0 + timedelta(days=1))
    assert key.expire(T0 + timedelta(days=2))
    assert not key.expire(T0 + timedelta(days=3))
    assert event_names(key) == ["Expired"]
    assert not key.revoke("user:u1", "", T0 + timedelta(days=3))
    with pytest.raises(KeyNotActive):
        key.set_scopes(["account:read"], "user:u1", T0 + timedelta(days=3))


def test_a_key_without_expiry_never_expires() -> None:
    key = mint()
    assert not key.expire(T0 + timedelta(days=100_000))
    assert key.status(T0 + timedelta(days=100_000)) == "active"


def test_an_expired_but_unswept_key_takes_no_scope_change() -> None:
    key = mint(expires_in_days=1)
    with pytest.raises(KeyNotActive) as raised:
        key.set_scopes(["account:read"], "user:u1", T0 + timedelta(days=1))
    assert raised.value.status == "expired"


def _pasted(t: str) -> dict[str, str]:
    """A token as a person might paste it from wherever it was."""
    full_width = "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in t)
    return {
        "as it is": t,
        "in a sentence": f"deploy key {t} for CI",
        "upper case": t.upper(),
        "percent-encoded": quote(t, safe=""),
        "percent-encoded twice": quote(quote(t, safe=""), safe=""),
        "underscores encoded": t.replace("_", "%5F"),
        "HTML references": t.replace("_", "&#95;"),
        "JSON escapes": t.replace("_", "\\u005f"),
        "full-width": full_width,
        "base64 (a Kubernetes secret)": base64.b64encode(t.encode()).decode(),
        "base64 glued to text": "k8s:" + base64.b64encode(b"x" + t.encode()).decode(),
        "without its prefix": t[len(token.PREFIX) :],
        "split after its prefix": f"{t[:9]} {t[9:]}",
        "prefix and four more": t[:13],
    }


@pytest.mark.parametrize("how", list(_pasted("ant_live_" + "A" * 50)))
def test_a_name_or_reason_that_holds_a_token_is_refused_however_it_was_pasted(how: str) -> None:
    t = token.generate()
    pasted = _pasted(t)[how]
    with pytest.raises(InvalidInput) as raised:
        mint(name=pasted)
    assert raised.value.field == "name"
    assert "holds a token" in raised.value.message
    assert t[12:] not in str(raised.value)
    key = mint()
    key.collect_events()
    with pytest.raises(InvalidInput) as raised:
        key.revoke("user:u1", pasted, T0)
    assert (raised.value.field, "holds a token" in raised.value.message) == ("reason", True)
    assert event_names(key) == []
    with pytest.raises(InvalidInput) as raised:
        mint(owner_id=pasted)
    assert raised.value.field == "owner_id"


@pytest.mark.parametrize(
    "name",
    [
        "deploy (ant_live_aB3)",  # the display prefix, which the API shows anyway
        "ant_live_ keys for CI",
        "A" * 100,  # long runs of token characters that are no token
        "Déploiement — 本番 🚀",
        "ant-live-123456789",
    ],
)
def test_names_that_hold_no_token_are_kept(name: str) -> None:
    assert mint(name=name).name == name


@pytest.mark.parametrize("reason", ["bad\x00reason", "line\nbreak", "a\u202eb", "x" * 201])
def test_a_reason_is_printable_on_one_line_and_short(reason: str) -> None:
    key = mint()
    with pytest.raises(InvalidInput) as raised:
        key.revoke("user:u1", reason, T0)
    assert raised.value.field == "reason"
