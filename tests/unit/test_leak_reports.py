"""Leaked tokens reported by a secret-scanning partner in GitHub's format: a signed report
revokes each live token it names, labels every entry by sha256, and anything unsigned, mis-
signed or oversized revokes nothing."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from litestar.testing import TestClient

from domain import token as token_format
from infra.leak_reports import LeakReporters
from infra.settings import Settings, SettingsError
from tests.api_support import (
    OPERATOR_SECRET,
    ORIGIN,
    SAME_ORIGIN,
    SECRET,
    api_client,
    bearer,
    mint,
    signed_in_as,
)

KEY_ID = "bcb53661c06b4728e59d897fb6165d5c9cda0fd9cdf9d09ead458168deb7518c"


class Partner:
    """A scanning partner with its own P-256 key pair, as GitHub signs its reports."""

    def __init__(self, key_id: str = KEY_ID) -> None:
        self.private = ec.generate_private_key(ec.SECP256R1())
        self.key_id = key_id

    def document(self) -> dict[str, Any]:
        pem = self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return {
            "public_keys": [
                {"key_identifier": self.key_id, "key": pem.decode(), "is_current": True}
            ]
        }

    def sign(self, body: bytes) -> dict[str, str]:
        signature = self.private.sign(body, ec.ECDSA(hashes.SHA256()))
        return {
            "Github-Public-Key-Identifier": self.key_id,
            "Github-Public-Key-Signature": base64.b64encode(signature).decode(),
            "Content-Type": "application/json",
        }


@pytest.fixture
def partner() -> Partner:
    return Partner()


@pytest.fixture
def client(tmp_path: Path, partner: Partner) -> Iterator[TestClient[Any]]:
    keys = tmp_path / "secret-scanning-keys.json"
    keys.write_text(json.dumps(partner.document()))
    settings = Settings(
        database_url="memory:",
        auth_secrets=(SECRET,),
        operator_secret=OPERATOR_SECRET,
        public_url=ORIGIN,
        leak_keys_file=str(keys),
    )
    with api_client(settings) as client:
        yield client


def report(*tokens: str, url: str = "https://github.com/octo/app/blob/abc/config.yml") -> bytes:
    return json.dumps(
        [{"token": t, "type": "anthra_api_token", "url": url, "source": "content"} for t in tokens]
    ).encode()


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_a_signed_report_revokes_each_live_token_and_labels_every_entry(
    client: TestClient[Any], partner: Partner
) -> None:
    leaked = mint(client, scopes=["account:read"])
    other = mint(client, scopes=["account:read"])
    stranger = token_format.generate()
    body = report(leaked["token"], stranger)
    answer = client.post("/v1/leaks", content=body, headers=partner.sign(body))
    assert answer.status_code == 200, answer.text
    assert answer.json() == [
        {
            "token_hash": sha256(leaked["token"]),
            "token_type": "anthra_api_token",
            "label": "true_positive",
        },
        {
            "token_hash": sha256(stranger),
            "token_type": "anthra_api_token",
            "label": "false_positive",
        },
    ]
    assert leaked["token"] not in answer.text
    assert client.get("/api/v1/account/whoami", headers=bearer(leaked["token"])).status_code == 401
    assert client.get("/api/v1/account/whoami", headers=bearer(other["token"])).status_code == 200
    events = client.get(f"/api/v1/keys/{leaked['id']}/history", headers=signed_in_as("alice"))
    revoked = events.json()["events"][-1]
    assert revoked["type"] == "Revoked" and revoked["reason"] == "leaked"
    assert revoked["actor"] == "system"
    assert revoked["context"]["leak_url"] == "https://github.com/octo/app/blob/abc/config.yml"
    assert revoked["context"]["leak_source"] == "content"
    # The same report again: the same labels, nothing appended
    again = client.post("/v1/leaks", content=body, headers=partner.sign(body))
    assert again.json() == answer.json()
    events = client.get(f"/api/v1/keys/{leaked['id']}/history", headers=signed_in_as("alice"))
    assert [e["type"] for e in events.json()["events"]] == ["Minted", "Revoked"]


def test_a_report_not_signed_by_a_partner_revokes_nothing(
    client: TestClient[Any], partner: Partner
) -> None:
    key = mint(client, scopes=["account:read"])
    body = report(key["token"])
    impostor = Partner()
    tampered = report(key["token"], url="https://elsewhere.example")
    for headers, content in (
        ({"Content-Type": "application/json"}, body),
        (impostor.sign(body), body),  # right key id, wrong key
        (Partner("unknown-key").sign(body), body),
        (partner.sign(body), tampered),  # signed, then changed
        (partner.sign(body) | {"Github-Public-Key-Signature": "not base64!"}, body),
    ):
        answer = client.post("/v1/leaks", content=content, headers=headers)
        assert answer.status_code == 401, answer.text
        assert key["token"] not in answer.text
    assert client.get("/api/v1/account/whoami", headers=bearer(key["token"])).status_code == 200


def test_a_malformed_or_oversized_report_is_refused_and_revokes_nothing(
    client: TestClient[Any], partner: Partner
) -> None:
    key = mint(client, scopes=["account:read"])
    for body in (b"{}", b"not json", json.dumps([{"type": "x"}]).encode(), b"[" * 5000):
        answer = client.post("/v1/leaks", content=body, headers=partner.sign(body))
        assert answer.status_code == 400, (body[:20], answer.text)
    huge = report(key["token"]) + b" " * (1024 * 1024)
    answer = client.post("/v1/leaks", content=huge, headers=partner.sign(huge))
    assert answer.status_code == 413
    assert client.get("/api/v1/account/whoami", headers=bearer(key["token"])).status_code == 200


def test_leak_reports_are_off_unless_a_keys_document_is_configured(tmp_path: Path) -> None:
    with api_client() as client:
        body = report(token_format.generate())
        answer = client.post("/v1/leaks", content=body, headers=Partner().sign(body))
        assert answer.status_code == 403
        assert "ANTHRA_LEAK_KEYS_FILE" in answer.text
    wrong = tmp_path / "keys.json"
    for content in (
        "{",
        '{"public_keys": []}',
        '{"public_keys": [{"key_identifier": "a", "key": "x"}]}',
    ):
        wrong.write_text(content)
        with pytest.raises(SettingsError, match="ANTHRA_LEAK_KEYS_FILE"):
            LeakReporters.load(str(wrong))
    with pytest.raises(SettingsError, match="cannot read"):
        LeakReporters.load(str(tmp_path / "missing.json"))


def test_a_token_in_a_reported_url_is_not_kept(client: TestClient[Any], partner: Partner) -> None:
    key = mint(client, scopes=["account:read"])
    nosy = f"https://example.com/?t={key['token']}"
    body = report(key["token"], url=nosy)
    assert client.post("/v1/leaks", content=body, headers=partner.sign(body)).status_code == 200
    history = client.get(
        f"/api/v1/keys/{key['id']}/history", headers=signed_in_as("alice") | SAME_ORIGIN
    )
    assert key["token"] not in history.text
    assert key["token"][:12] in history.json()["events"][-1]["context"]["leak_url"]
