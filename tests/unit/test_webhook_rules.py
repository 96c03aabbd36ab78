"""Webhook rules as pure functions: the URLs an endpoint may have, the Standard Webhooks
signature (checked with the `standardwebhooks` package, as receivers check it), and when a
failed delivery is tried again."""

from __future__ import annotations

import base64

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from domain.errors import InvalidInput
from domain.token import generate
from domain.webhooks import (
    FIRST_DELAY,
    JITTER,
    MAX_DELAY,
    check_url,
    message_id,
    notice_id,
    retry_delay,
    sign,
)
from ledger.webhooks import check_event_types, new_secret


def test_a_secret_is_whsec_and_base64_of_32_random_bytes() -> None:
    secret = new_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 32
    assert new_secret() != secret


def test_a_signature_verifies_with_the_standard_webhooks_package() -> None:
    secret, body, timestamp = new_secret(), b'{"type":"Minted"}', 1_700_000_000
    headers = {
        "webhook-id": message_id(42),
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, message_id(42), timestamp, body),
    }
    receiver = Webhook(secret)
    # Its own signature is the same bytes
    assert (
        receiver.sign(message_id(42), _at(timestamp), body.decode()) == headers["webhook-signature"]
    )
    # A changed body, id or secret does not verify
    for changed in (
        (secret, body + b" ", headers),
        (secret, body, headers | {"webhook-id": message_id(43)}),
        (new_secret(), body, headers),
    ):
        with pytest.raises(WebhookVerificationError):
            Webhook(changed[0]).verify(changed[1], changed[2])


def _at(timestamp: int) -> object:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(timestamp, UTC)


def test_message_ids_are_stable_per_event_and_per_notice() -> None:
    assert message_id(7) == message_id(7) == "evt_7"
    assert notice_id("k", 7) != notice_id("k", 1)


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.com/anthra",
        "https://hooks.example.com:8443/in?team=a",
        "https://203.0.113.9.nip.io/x",
        "https://[2606:4700::1111]/x",
    ],
)
def test_public_https_urls_are_accepted(url: str) -> None:
    assert check_url(url) == url


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://hooks.example.com/", "https"),
        ("ftp://hooks.example.com/", "https"),
        ("https://user:pw@hooks.example.com/", "credentials"),
        ("https://hooks.example.com/#frag", "fragment"),
        ("https://hooks.example.com:0/", "port"),
        ("https://hooks.example.com:99999/", "port"),
        ("https:///nohost", "host"),
        ("https://[::1/x", "well-formed"),
        ("http://[", "well-formed"),
        ("https://10.0.0.8/", "public"),
        ("https://192.168.1.1/", "public"),
        ("https://169.254.169.254/latest/meta-data", "public"),
        ("https://[fd00::1]/", "public"),
        ("https://[::ffff:10.0.0.1]/", "public"),
        ("https://127.0.0.1/", "this machine"),
        ("https://localhost/", "this machine"),
        ("http://127.0.0.1:9/", "https"),
        ("https://hooks.example.com/ a", "printable"),
        ("https://hooks.example.com/\u00e9", "printable"),
        ("https://h/" + "a" * 2100, "printable"),
    ],
)
def test_other_urls_are_refused_naming_the_url(url: str, why: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        check_url(url)
    assert refused.value.field == "url"
    assert why in refused.value.message


# An endpoint's URL is kept in its events for good and shown on every read, like a key's name.
TOKEN_IN_URL = {
    "in the path": "https://hooks.example.com/{token}",
    "in the query": "https://hooks.example.com/in?key={token}",
    "percent-encoded": "https://hooks.example.com/in?key={encoded}",
    "without its prefix": "https://hooks.example.com/in?key={bare}",
    "as a host label": "https://{bare}.example.com/",
}


@pytest.mark.parametrize("shape", TOKEN_IN_URL.values(), ids=TOKEN_IN_URL.keys())
def test_a_url_holding_a_token_is_refused_naming_the_url(shape: str) -> None:
    token = generate()
    url = shape.format(
        token=token,
        encoded=token.replace("_", "%5F"),
        bare=token[len("ant_live_") :],
    )
    with pytest.raises(InvalidInput) as refused:
        check_url(url)
    assert refused.value.field == "url"
    assert "token" in refused.value.message


def test_http_to_loopback_only_when_the_operator_allows_it() -> None:
    assert check_url("http://127.0.0.1:8080/in", allow_http_loopback=True)
    assert check_url("http://localhost:8080/in", allow_http_loopback=True)
    with pytest.raises(InvalidInput):
        check_url("http://hooks.example.com/", allow_http_loopback=True)
    with pytest.raises(InvalidInput):
        check_url("http://10.0.0.1/", allow_http_loopback=True)


def test_event_types_are_the_key_events_and_expiring_soon() -> None:
    assert check_event_types(["Minted", "Revoked", "Minted"]) == ["Minted", "Revoked"]
    for bad in ([], ["Minted", "Deleted"], ["WebhookRegistered"]):
        with pytest.raises(InvalidInput) as refused:
            check_event_types(bad)
        assert refused.value.field == "event_types"


def test_retries_back_off_exponentially_with_bounded_jitter_up_to_a_cap() -> None:
    # Without jitter: 5 s, 10 s, 20 s, ... doubling to an hour
    schedule = [retry_delay(n, 0.0) for n in range(1, 13)]
    assert schedule[:4] == [FIRST_DELAY, 2 * FIRST_DELAY, 4 * FIRST_DELAY, 8 * FIRST_DELAY]
    assert schedule[-1] == MAX_DELAY
    assert schedule == sorted(schedule)
    # Jitter moves a delay at most JITTER of itself either way
    assert retry_delay(3, 1.0) == pytest.approx(4 * FIRST_DELAY * (1 + JITTER))
    assert retry_delay(3, -1.0) == pytest.approx(4 * FIRST_DELAY * (1 - JITTER))
    assert retry_delay(3, 7.0) == retry_delay(3, 1.0)
    # Over 24 hours that is about 30 tries, not thousands
    elapsed, tries = 0.0, 0
    while elapsed < 24 * 3600:
        tries += 1
        elapsed += retry_delay(tries, 0.0)
    assert 20 < tries < 40
    # A huge attempt count does not overflow
    assert retry_delay(10_000, 0.0) == MAX_DELAY


def test_a_webhook_secret_never_reaches_a_log_line() -> None:
    from infra.logging import redact

    secret = new_secret()
    for line in (f"registered {secret}", f'{{"secret": "{secret}"}}', f"secret={secret}&x=1"):
        redacted = redact(line)
        assert secret.removeprefix("whsec_")[:8] not in redacted
        assert "whsec_[redacted]" in redacted


def test_the_webhook_settings_are_read_and_checked() -> None:
    from infra.settings import SettingsError, load_settings

    env = {
        "ANTHRA_WEBHOOKS_ALLOW_HTTP_LOOPBACK": "1",
        "ANTHRA_WEBHOOK_RETRY_WINDOW": "30",
        "ANTHRA_WEBHOOK_FIRST_RETRY": "0.5",
        "ANTHRA_WEBHOOK_TIMEOUT": "3",
        "ANTHRA_WEBHOOK_CONCURRENCY": "2",
    }
    settings = load_settings(env)
    assert settings.webhooks_allow_http_loopback
    assert (settings.webhook_retry_window, settings.webhook_first_retry) == (30.0, 0.5)
    assert (settings.webhook_timeout, settings.webhook_concurrency) == (3.0, 2)
    defaults = load_settings({})
    assert not defaults.webhooks_allow_http_loopback
    assert defaults.webhook_retry_window == 24 * 3600 and defaults.webhook_timeout == 10
    for name, bad in (("ANTHRA_WEBHOOK_RETRY_WINDOW", "0"), ("ANTHRA_WEBHOOK_TIMEOUT", "x")):
        with pytest.raises(SettingsError, match=name):
            load_settings({name: bad})
