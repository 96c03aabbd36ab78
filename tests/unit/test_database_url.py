"""The database URL is read once, and every libpq parameter in it is kept as libpq reads it."""

from __future__ import annotations

import pytest
from psycopg.conninfo import conninfo_to_dict

from infra.backends import backend_for
from infra.backends.postgres.store import CONNINFO
from infra.backends.postgres.url import parse_postgres_url
from infra.settings import SettingsError, load_settings
from tests.conftest import settings_for


def test_every_libpq_parameter_reaches_the_connection_string() -> None:
    url = parse_postgres_url(
        "postgresql://ledger:s%40cret@db1:5432,db2:5433/anthra?sslmode=verify-full"
        "&sslrootcert=/etc/ssl/ca.pem&sslcert=/c.pem&sslkey=/k.pem&connect_timeout=4"
        "&application_name=anthra&options=-c%20search_path%3Dx&target_session_attrs=read-write"
        "&schema=keys"
    )
    params = conninfo_to_dict(url.conninfo)
    assert params == {
        "user": "ledger",
        "password": "s@cret",
        "host": "db1,db2",
        "port": "5432,5433",
        "dbname": "anthra",
        "sslmode": "verify-full",
        "sslrootcert": "/etc/ssl/ca.pem",
        "sslcert": "/c.pem",
        "sslkey": "/k.pem",
        "connect_timeout": "4",
        "application_name": "anthra",
        "options": "-c search_path=x",
        "target_session_attrs": "read-write",
    }
    # `schema` is ours: it names where the tables live and never reaches libpq
    assert url.schema == "keys"


def test_a_service_name_and_a_socket_directory_are_libpq_s_too() -> None:
    assert (
        conninfo_to_dict(parse_postgres_url("postgresql:///anthra?service=ledger").conninfo)[
            "service"
        ]
        == "ledger"
    )
    params = conninfo_to_dict(
        parse_postgres_url("postgresql:///anthra?host=/var/run/postgresql").conninfo
    )
    assert params["host"] == "/var/run/postgresql"


def test_without_a_connect_timeout_a_connection_attempt_gives_up_after_two_seconds() -> None:
    assert parse_postgres_url("postgresql://db/anthra").params["connect_timeout"] == "2"


def test_the_event_store_gets_the_whole_connection_string_and_the_pool_sizes() -> None:
    settings = settings_for(
        "postgresql://u:pw@db/anthra?sslmode=require&schema=s", db_pool_size=3, db_pool_max=9
    )
    env = backend_for(settings).store_env()
    assert conninfo_to_dict(env[CONNINFO])["sslmode"] == "require"
    assert env["POSTGRES_SCHEMA"] == "s"
    assert (env["POSTGRES_POOL_SIZE"], env["ANTHRA_POSTGRES_POOL_MAX"]) == ("3", "9")


def test_the_log_line_names_the_server_and_tls_mode_but_never_the_password() -> None:
    described = parse_postgres_url(
        "postgresql://u:hunter2@db:6432/anthra?sslmode=require"
    ).describe()
    assert "hunter2" not in described
    assert described == "u@db:6432/anthra sslmode=require"


@pytest.mark.parametrize(
    ("url", "named"),
    [
        ("postgresql://db/anthra?sslmod=require", "sslmod"),
        ("postgresql://db/anthra?pool_size=2", "ANTHRA_DB_POOL_SIZE"),
        ("postgresql://db/anthra?connect_timeout=0", "connect_timeout"),
        ("postgresql://db/", "database name"),
        ("postgresql://db/anthra?schema=", "schema"),
    ],
)
def test_what_libpq_cannot_honour_stops_the_start_naming_it(url: str, named: str) -> None:
    with pytest.raises(SettingsError, match=named):
        load_settings({"ANTHRA_DATABASE_URL": url})


def test_pool_sizes_are_settings_with_defaults() -> None:
    settings = load_settings({})
    assert (settings.db_pool_size, settings.db_pool_max) == (5, 15)
    settings = load_settings({"ANTHRA_DB_POOL_SIZE": "8", "ANTHRA_DB_POOL_MAX": "20"})
    assert (settings.db_pool_size, settings.db_pool_max) == (8, 20)
    with pytest.raises(SettingsError, match="ANTHRA_DB_POOL_MAX"):
        load_settings({"ANTHRA_DB_POOL_SIZE": "8", "ANTHRA_DB_POOL_MAX": "4"})
