"""The edge's and the limiter's settings: what is required, the defaults, and wrong values."""

from __future__ import annotations

import pytest

from infra.settings import SettingsError, load_settings

PRODUCTION = {"AUTH_SECRET": "s" * 32, "ANTHRA_PUBLIC_URL": "https://api.anthra.example"}


@pytest.mark.parametrize(
    "env",
    [
        {"AUTH_SECRET": "s" * 32},  # a real secret: not development mode
        {"ANTHRA_HOST": "0.0.0.0"},  # noqa: S104 -- beyond loopback: not development mode
        {"ANTHRA_HOST": "::", "ANTHRA_ALLOWED_ORIGINS": "https://a.example"},
    ],
)
def test_outside_development_mode_the_start_needs_a_public_url_or_allowed_hosts(
    env: dict[str, str],
) -> None:
    with pytest.raises(SettingsError, match=r"ANTHRA_PUBLIC_URL .* or ANTHRA_ALLOWED_HOSTS"):
        load_settings(env)
    assert load_settings(env | {"ANTHRA_PUBLIC_URL": "https://api.anthra.example"}).public_url
    assert load_settings(env | {"ANTHRA_ALLOWED_HOSTS": "api.anthra.example"}).allowed_hosts


def test_development_mode_needs_neither() -> None:
    settings = load_settings({})
    assert settings.dev_mode
    assert settings.public_url == ""
    assert settings.allowed_hosts == ()


def test_the_defaults() -> None:
    settings = load_settings(PRODUCTION)
    assert settings.trusted_proxies == ()
    assert settings.max_header_bytes == 16384
    assert settings.max_headers == 100
    assert settings.request_read_timeout == 10.0
    assert settings.auth_failures_per_ip == 100
    assert settings.auth_failures_per_prefix == 20
    assert settings.auth_failure_window == 60.0
    assert settings.redis_url == ""


def test_values_are_read_and_normalised() -> None:
    settings = load_settings(
        PRODUCTION
        | {
            "ANTHRA_PUBLIC_URL": "https://api.anthra.example/",
            "ANTHRA_TRUSTED_PROXIES": "10.0.0.1, 172.28.0.0/24,::1",
            "ANTHRA_ALLOWED_HOSTS": "API.anthra.example,[::1]",
            "ANTHRA_MAX_HEADER_BYTES": "32768",
            "ANTHRA_MAX_HEADERS": "50",
            "ANTHRA_REQUEST_READ_TIMEOUT": "2.5",
            "ANTHRA_AUTH_FAILURES_PER_IP": "0",
            "ANTHRA_AUTH_FAILURE_WINDOW": "300",
            "ANTHRA_REDIS_URL": "redis://127.0.0.1:6379/0",
        }
    )
    assert settings.public_url == "https://api.anthra.example"
    assert settings.trusted_proxies == ("10.0.0.1/32", "172.28.0.0/24", "::1/128")
    assert settings.allowed_hosts == ("api.anthra.example", "[::1]")
    assert (settings.max_header_bytes, settings.max_headers) == (32768, 50)
    assert settings.request_read_timeout == 2.5
    assert (settings.auth_failures_per_ip, settings.auth_failure_window) == (0, 300.0)
    assert settings.redis_url == "redis://127.0.0.1:6379/0"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ANTHRA_TRUSTED_PROXIES", "nginx"),
        ("ANTHRA_TRUSTED_PROXIES", "10.0.0.0/33"),
        ("ANTHRA_ALLOWED_HOSTS", "https://api.anthra.example"),
        ("ANTHRA_ALLOWED_HOSTS", "api.anthra.example:443"),
        ("ANTHRA_PUBLIC_URL", "api.anthra.example"),
        ("ANTHRA_PUBLIC_URL", "ftp://api.anthra.example"),
        ("ANTHRA_PUBLIC_URL", "https://api.anthra.example?x=1"),
        ("ANTHRA_PUBLIC_URL", 'https://api.anthra.example", x="y'),
        ("ANTHRA_PUBLIC_URL", "https://user@api.anthra.example"),
        ("ANTHRA_MAX_HEADER_BYTES", "100"),
        ("ANTHRA_MAX_HEADERS", "many"),
        ("ANTHRA_REQUEST_READ_TIMEOUT", "0"),
        ("ANTHRA_REQUEST_READ_TIMEOUT", "forever"),
        ("ANTHRA_AUTH_FAILURES_PER_PREFIX", "-1"),
        ("ANTHRA_AUTH_FAILURE_WINDOW", "0"),
        ("ANTHRA_REDIS_URL", "127.0.0.1:6379"),
    ],
)
def test_a_wrong_value_stops_the_start_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        load_settings(PRODUCTION | {name: value})
