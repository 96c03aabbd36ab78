"""Configuration: one ANTHRA_* environment namespace, plus Auth.js's own AUTH_SECRET."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from urllib.parse import urlsplit

import msgspec

# The HTTP servers `anthra-keys serve` can run the app on (ANTHRA_SERVER); the first is the default.
SERVERS = ("uvicorn", "granian")


class SettingsError(ValueError):
    """A configuration value is wrong; names the variable."""


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """What the service reads from its environment; the defaults work on a fresh machine."""

    database_url: str = ""
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    auth_secrets: tuple[str, ...] = ()
    authjs_database_url: str = ""
    verify_secret: str = ""
    operator_secret: str = ""
    allowed_origins: tuple[str, ...] = ()
    log_level: str = "INFO"
    log_json: bool = False
    access_log: bool = True
    server: str = "uvicorn"
    poll_interval: float = 0.1
    heartbeat_interval: float = 0.25
    max_staleness: float = 0.75
    sweep_interval: float = 30.0
    usage_flush_interval: float = 10.0
    sign_in_url: str = "/api/auth/signin"
    policy_file: str = ""
    public_url: str = ""
    authorization_servers: tuple[str, ...] = ()
    dev_secret: str = ""
    dev_sign_in_code: str = ""
    dev_user: str = "local-developer"
    db_pool_size: int = 5
    db_pool_max: int = 15
    trusted_proxies: tuple[str, ...] = ()
    allowed_hosts: tuple[str, ...] = ()
    max_header_bytes: int = 16 * 1024
    max_headers: int = 100
    request_read_timeout: float = 10.0
    redis_url: str = ""
    auth_failure_window: float = 60.0
    auth_failures_per_ip: int = 100
    auth_failures_per_prefix: int = 20
    auth_failure_sync_interval: float = 0.5
    leak_keys_file: str = ""
    webhooks_allow_http_loopback: bool = False
    webhook_retry_window: float = 86400.0
    webhook_first_retry: float = 5.0
    webhook_timeout: float = 10.0
    webhook_concurrency: int = 4
    webhook_interval: float = 1.0
    metrics_port: int = 0
    metrics_host: str = "127.0.0.1"

    @property
    def dev_mode(self) -> bool:
        """Development mode: no AUTH_SECRET and serving on loopback only."""
        return not self.auth_secrets and is_loopback(self.host)


def require_public_origin(settings: Settings) -> None:
    """Outside development mode the service must know its public origin or the hosts it serves:
    it never builds a URL from a Host header it was not told to expect."""
    if not settings.dev_mode and not settings.public_url and not settings.allowed_hosts:
        raise SettingsError(
            "ANTHRA_PUBLIC_URL (the public origin, e.g. https://api.anthra.example) or "
            "ANTHRA_ALLOWED_HOSTS (the host names clients use) must be set outside development "
            "mode (AUTH_SECRET set, or serving beyond loopback)"
        )


def is_loopback(host: str) -> bool:
    """Whether a host name or address is this machine only."""
    host = host.strip().strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _float(env: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from None
    if not low <= value <= high:
        raise SettingsError(f"{name} must be between {low} and {high}, got {value}")
    return value


def _int(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number, got {raw!r}") from None
    if not low <= value <= high:
        raise SettingsError(f"{name} must be between {low} and {high}, got {value}")
    return value


def _list(raw: str | None) -> tuple[str, ...]:
    return tuple(part.strip() for part in (raw or "").split(",") if part.strip())


def _secret(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "")
    if value and len(value) < 32:
        raise SettingsError(f"{name} must be at least 32 characters (e.g. openssl rand -hex 32)")
    return value


# A host name or IPv4 address, or a bracketed IPv6 address: what may stand in a URL's authority.
_HOST_NAME = frozenset("abcdefghijklmnopqrstuvwxyz0123456789.-")


def is_host_name(host: str) -> bool:
    """Whether `host` (no port) is a DNS name, an IPv4 address or a bracketed IPv6 address."""
    if host.startswith("[") and host.endswith("]"):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            return False
        return True
    return bool(host) and len(host) <= 253 and set(host.lower()) <= _HOST_NAME


def _proxies(raw: str | None) -> tuple[str, ...]:
    networks = []
    for part in _list(raw):
        try:
            networks.append(str(ipaddress.ip_network(part, strict=False)))
        except ValueError:
            raise SettingsError(
                f"ANTHRA_TRUSTED_PROXIES: {part!r} is not an IP address or CIDR network"
            ) from None
    return tuple(networks)


def _hosts(raw: str | None) -> tuple[str, ...]:
    hosts = []
    for part in _list(raw):
        host = part.lower()
        if not is_host_name(host):
            raise SettingsError(
                f"ANTHRA_ALLOWED_HOSTS: {part!r} is not a host name (give names without a "
                "scheme or port, e.g. api.anthra.example)"
            )
        hosts.append(host)
    return tuple(hosts)


def _public_url(raw: str) -> str:
    url = raw.strip().rstrip("/")
    if not url:
        return ""
    parts = urlsplit(url)
    try:
        port = parts.port
        port_ok = port is None or port > 0
    except ValueError:
        port, port_ok = None, False
    host = parts.netloc.rpartition(":")[0] if port is not None else parts.netloc
    if (
        parts.scheme not in ("http", "https")
        or "@" in parts.netloc
        or not port_ok
        or not is_host_name(host)
        or parts.query
        or parts.fragment
        or not (url.isascii() and url.isprintable())
        or any(c in url for c in ' "\\<>')
    ):
        raise SettingsError(
            f"ANTHRA_PUBLIC_URL must be an http(s) origin such as https://api.anthra.example, "
            f"got {raw!r}"
        )
    return url


def auth_secrets(env: Mapping[str, str]) -> tuple[str, ...]:
    """AUTH_SECRET, then AUTH_SECRET_1, _2, _3 as Auth.js reads them; the first encrypts."""
    names = ["AUTH_SECRET"] + [f"AUTH_SECRET_{i}" for i in range(1, 4)]
    return tuple(env[name] for name in names if env.get(name))


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Settings from the environment; a wrong value stops the start with its variable named."""
    env = os.environ if env is None else env
    database_url = env.get("ANTHRA_DATABASE_URL", "").strip()
    # The backends read the URLs; imported here, as they read SettingsError from this module.
    from infra.backends import check_database_url
    from infra.backends.postgres.url import is_postgres_url, parse_postgres_url

    check_database_url(database_url)  # a parameter libpq cannot honour stops the start here
    authjs_database_url = env.get("ANTHRA_AUTHJS_DATABASE_URL", "").strip()
    if authjs_database_url:
        if not is_postgres_url(authjs_database_url):
            raise SettingsError("ANTHRA_AUTHJS_DATABASE_URL must be a postgresql:// URL")
        parse_postgres_url(authjs_database_url, "ANTHRA_AUTHJS_DATABASE_URL")
    pool_size = _int(env, "ANTHRA_DB_POOL_SIZE", 5, 1, 100)
    pool_max = _int(env, "ANTHRA_DB_POOL_MAX", max(15, pool_size), 1, 200)
    if pool_max < pool_size:
        raise SettingsError(
            f"ANTHRA_DB_POOL_MAX ({pool_max}) must be at least ANTHRA_DB_POOL_SIZE ({pool_size})"
        )
    redis_url = env.get("ANTHRA_REDIS_URL", "").strip()
    if redis_url and not redis_url.startswith(("redis://", "rediss://", "unix://")):
        raise SettingsError("ANTHRA_REDIS_URL must be a redis://, rediss:// or unix:// URL")
    level = env.get("ANTHRA_LOG_LEVEL", "INFO").upper()
    if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
        raise SettingsError(f"ANTHRA_LOG_LEVEL must be a logging level, got {level!r}")
    access_log = env.get("ANTHRA_ACCESS_LOG", "on").strip().lower()
    if access_log not in {"on", "off"}:
        raise SettingsError(f"ANTHRA_ACCESS_LOG must be on or off, got {access_log!r}")
    server = env.get("ANTHRA_SERVER", "uvicorn").strip().lower()
    if server not in SERVERS:
        raise SettingsError(f"ANTHRA_SERVER must be one of {', '.join(SERVERS)}, got {server!r}")
    settings = Settings(
        database_url=database_url,
        host=env.get("ANTHRA_HOST", "127.0.0.1"),
        port=_int(env, "ANTHRA_PORT", 8000, 0, 65535),
        workers=_int(env, "ANTHRA_WORKERS", 1, 1, 64),
        auth_secrets=auth_secrets(env),
        authjs_database_url=authjs_database_url,
        verify_secret=env.get("ANTHRA_VERIFY_SECRET", ""),
        operator_secret=_secret(env, "ANTHRA_OPERATOR_SECRET"),
        allowed_origins=_list(env.get("ANTHRA_ALLOWED_ORIGINS")),
        log_level=level,
        log_json=env.get("ANTHRA_LOG_JSON", "") in {"1", "true", "yes"},
        access_log=access_log == "on",
        server=server,
        poll_interval=_float(env, "ANTHRA_POLL_INTERVAL", 0.1, 0.005, 5.0),
        heartbeat_interval=_float(env, "ANTHRA_HEARTBEAT_INTERVAL", 0.25, 0.01, 5.0),
        max_staleness=_float(env, "ANTHRA_MAX_STALENESS", 0.75, 0.05, 1.0),
        sweep_interval=_float(env, "ANTHRA_SWEEP_INTERVAL", 30.0, 0.05, 86400.0),
        usage_flush_interval=_float(env, "ANTHRA_USAGE_FLUSH_INTERVAL", 10.0, 0.05, 60.0),
        sign_in_url=env.get("ANTHRA_SIGN_IN_URL", "/api/auth/signin"),
        policy_file=env.get("ANTHRA_POLICY_FILE", ""),
        public_url=_public_url(env.get("ANTHRA_PUBLIC_URL", "")),
        authorization_servers=_list(env.get("ANTHRA_AUTHORIZATION_SERVERS")),
        dev_secret=env.get("ANTHRA_DEV_SECRET", ""),
        dev_sign_in_code=env.get("ANTHRA_DEV_SIGN_IN_CODE", ""),
        dev_user=env.get("ANTHRA_DEV_USER", "local-developer"),
        db_pool_size=pool_size,
        db_pool_max=pool_max,
        trusted_proxies=_proxies(env.get("ANTHRA_TRUSTED_PROXIES")),
        allowed_hosts=_hosts(env.get("ANTHRA_ALLOWED_HOSTS")),
        max_header_bytes=_int(env, "ANTHRA_MAX_HEADER_BYTES", 16 * 1024, 1024, 1024 * 1024),
        max_headers=_int(env, "ANTHRA_MAX_HEADERS", 100, 10, 1000),
        request_read_timeout=_float(env, "ANTHRA_REQUEST_READ_TIMEOUT", 10.0, 0.1, 300.0),
        redis_url=redis_url,
        auth_failure_window=_float(env, "ANTHRA_AUTH_FAILURE_WINDOW", 60.0, 1.0, 86400.0),
        auth_failures_per_ip=_int(env, "ANTHRA_AUTH_FAILURES_PER_IP", 100, 0, 1_000_000),
        auth_failures_per_prefix=_int(env, "ANTHRA_AUTH_FAILURES_PER_PREFIX", 20, 0, 1_000_000),
        auth_failure_sync_interval=_float(
            env, "ANTHRA_AUTH_FAILURE_SYNC_INTERVAL", 0.5, 0.01, 10.0
        ),
        leak_keys_file=env.get("ANTHRA_LEAK_KEYS_FILE", "").strip(),
        webhooks_allow_http_loopback=env.get("ANTHRA_WEBHOOKS_ALLOW_HTTP_LOOPBACK", "")
        in {"1", "true", "yes"},
        webhook_retry_window=_float(env, "ANTHRA_WEBHOOK_RETRY_WINDOW", 86400.0, 1.0, 7 * 86400.0),
        webhook_first_retry=_float(env, "ANTHRA_WEBHOOK_FIRST_RETRY", 5.0, 0.05, 3600.0),
        webhook_timeout=_float(env, "ANTHRA_WEBHOOK_TIMEOUT", 10.0, 0.5, 60.0),
        webhook_concurrency=_int(env, "ANTHRA_WEBHOOK_CONCURRENCY", 4, 1, 64),
        webhook_interval=_float(env, "ANTHRA_WEBHOOK_INTERVAL", 1.0, 0.05, 60.0),
        metrics_port=_int(env, "ANTHRA_METRICS_PORT", 0, 0, 65535),
        metrics_host=env.get("ANTHRA_METRICS_HOST", "127.0.0.1").strip() or "127.0.0.1",
    )
    require_public_origin(settings)
    return settings
