"""The operator CLI on a real SQLite store: the token is printed once and never read from argv."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def run(sqlite_url: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    def run(
        *args: str, stdin: str = "", env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "api.cli", *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=os.environ
            | {"ANTHRA_DATABASE_URL": sqlite_url, "PYTHONPATH": str(ROOT)}
            | (env or {}),
            cwd=tmp_path,
            timeout=60,
        )

    return run


def test_an_operator_mints_lists_revokes_and_reads_history(run) -> None:  # type: ignore[no-untyped-def]
    # Mint: the key as JSON, then the token alone on the last line
    minted = run(
        "keys",
        "mint",
        "--owner",
        "u1",
        "--name",
        "ops",
        "--scope",
        "books:read",
        "--scope",
        "account:read",
        "--expires-in-days",
        "30",
    )
    assert minted.returncode == 0, minted.stderr
    *key_json, token = minted.stdout.strip().splitlines()
    key = json.loads("\n".join(key_json))
    assert token.startswith("ant_live_") and len(token) == 59
    assert key["prefix"] == token[:12]
    assert "shown once" in minted.stderr

    # Verify reads the token from standard input or ANTHRA_TOKEN, never argv
    assert run("keys", "verify", "--scope", "books:read", stdin=token + "\n").returncode == 0
    assert run("keys", "verify", env={"ANTHRA_TOKEN": token}).returncode == 0
    assert run("keys", "verify", "--scope", "publish:write", stdin=token).returncode == 1

    # List and show never show the token
    listed = run("keys", "list", "--owner", "u1")
    assert token[12:] not in listed.stdout
    assert json.loads(listed.stdout)["keys"][0]["id"] == key["id"]
    assert json.loads(run("keys", "show", key["id"]).stdout)["status"] == "active"

    # Revoke, twice; history records one Revoked by the operator
    assert run("keys", "revoke", key["id"], "--reason", "rotated").returncode == 0
    assert run("keys", "revoke", key["id"]).returncode == 0
    events = json.loads(run("keys", "history", key["id"]).stdout)["events"]
    assert [e["type"] for e in events] == ["Minted", "Revoked"]
    assert events[1]["actor"].startswith("operator:")
    assert events[1]["reason"] == "rotated"
    assert run("keys", "verify", stdin=token).returncode == 1


def test_mistakes_get_a_clear_message_and_no_trace(run) -> None:  # type: ignore[no-untyped-def]
    unknown = run("keys", "show", "00000000-0000-0000-0000-000000000000")
    assert unknown.returncode == 1
    assert "no key with id" in unknown.stderr
    assert "Traceback" not in unknown.stderr
    bad = run(
        "keys",
        "mint",
        "--owner",
        "u1",
        "--name",
        "x",
        "--scope",
        "books:read",
        "--expires-in-days",
        "0",
    )
    assert bad.returncode == 1
    assert "expires_in_days" in bad.stderr
    no_token = run("keys", "verify", stdin="")
    assert no_token.returncode == 2
    # There is no way to pass a token as an argument
    as_arg = run("keys", "verify", "ant_live_" + "A" * 50)
    assert as_arg.returncode == 2
    assert "ant_live_AAAA" not in as_arg.stderr


def test_an_operator_reads_exports_and_checks_the_audit_trail(run, sqlite_url: str) -> None:  # type: ignore[no-untyped-def]
    import sqlite3

    minted = run("keys", "mint", "--owner", "u1", "--name", "a", "--scope", "books:read")
    key = json.loads("\n".join(minted.stdout.strip().splitlines()[:-1]))
    run("keys", "mint", "--owner", "u2", "--name", "b", "--scope", "books:read")
    run("keys", "revoke", key["id"])

    # List: newest first, every owner unless one is named
    every = json.loads(run("audit", "list").stdout)["events"]
    assert [e["type"] for e in every] == ["Revoked", "Minted", "Minted"]
    mine = json.loads(run("audit", "list", "--owner", "u1", "--oldest").stdout)["events"]
    assert [e["type"] for e in mine] == ["Minted", "Revoked"]

    # Export: NDJSON with positions and chain values, resumable
    lines = [json.loads(line) for line in run("audit", "export").stdout.splitlines()]
    assert [line["position"] for line in lines] == [1, 2, 3]
    resumed = run("audit", "export", "--after", "2").stdout.splitlines()
    assert [json.loads(line)["position"] for line in resumed] == [3]

    # Check: the head is the last chain value
    verified = run("audit", "check")
    assert verified.returncode == 0
    assert json.loads(verified.stdout)["head_chain"] == lines[-1]["chain"]

    # Someone edits a stored event behind the ledger's back: the check says where
    path = sqlite_url.removeprefix("sqlite:")
    with sqlite3.connect(path) as db:
        db.execute(
            "UPDATE stored_events SET state = CAST(replace(CAST(state AS TEXT), 'books:read', "
            "'publish:write') AS BLOB) WHERE rowid = 2"
        )
    tampered = run("audit", "check")
    assert tampered.returncode == 1
    assert json.loads(tampered.stdout)["first_bad_position"] == 2
    assert "position 2" in tampered.stderr


@pytest.mark.postgres
def test_serve_stops_at_once_when_the_session_database_lacks_auth_js_tables(
    run, postgres_url: str
) -> None:  # type: ignore[no-untyped-def]
    # The schema exists but holds no @auth/pg-adapter tables
    served = run(
        "serve",
        "--port",
        "0",
        env={
            "ANTHRA_AUTHJS_DATABASE_URL": postgres_url,
            "AUTH_SECRET": "s" * 32,
            "ANTHRA_PUBLIC_URL": "http://127.0.0.1",
        },
    )
    assert served.returncode == 2
    assert "missing sessions.expires" in served.stderr
    assert "Traceback" not in served.stderr + served.stdout


def test_serve_outside_development_mode_will_not_start_without_its_public_url(run) -> None:  # type: ignore[no-untyped-def]
    for env, args in (
        ({"AUTH_SECRET": "s" * 32}, ()),
        ({"AUTH_SECRET": ""}, ("--host", "0.0.0.0")),  # noqa: S104
    ):
        served = run("serve", "--port", "0", *args, env=env)
        assert served.returncode == 2
        assert "ANTHRA_PUBLIC_URL" in served.stderr
        assert "ANTHRA_ALLOWED_HOSTS" in served.stderr
        assert "Traceback" not in served.stderr + served.stdout


def test_a_token_is_refused_as_a_name_or_a_reason_and_never_echoed(run) -> None:  # type: ignore[no-untyped-def]
    minted = run("keys", "mint", "--owner", "u1", "--name", "ops", "--scope", "books:read")
    *key_json, token = minted.stdout.strip().splitlines()
    key = json.loads("\n".join(key_json))
    # A name that holds the token, as pasted or percent-encoded
    for name in (token, f"deploy {token.replace('_', '%5F')}"):
        refused = run("keys", "mint", "--owner", "u1", "--name", name, "--scope", "books:read")
        assert refused.returncode == 1
        assert "name: it holds a token" in refused.stderr
        assert token[12:] not in refused.stderr + refused.stdout
    # A reason that does
    refused = run("keys", "revoke", key["id"], "--reason", f"leaked: {token}")
    assert refused.returncode == 1
    assert "reason: it holds a token" in refused.stderr
    # Nothing was recorded: one key, still active, its history one event long
    assert [
        k["status"] for k in json.loads(run("keys", "list", "--owner", "u1").stdout)["keys"]
    ] == ["active"]
    assert token[12:] not in run("audit", "export").stdout


def test_a_cursor_or_start_beyond_64_bits_is_refused_before_the_store_is_read(run) -> None:  # type: ignore[no-untyped-def]
    run("keys", "mint", "--owner", "u1", "--name", "a", "--scope", "books:read")
    for args in (
        ("audit", "list", "--cursor", str(2**63)),
        ("audit", "list", "--cursor", "²"),
        ("audit", "export", "--after", str(2**63)),
        ("audit", "list", "--limit", "0"),
    ):
        refused = run(*args)
        assert refused.returncode == 2, args
        assert "Traceback" not in refused.stderr
    assert run("audit", "export", "--after", str(2**63 - 1)).returncode == 0


def test_scan_finds_a_token_in_a_file_and_exits_1_as_a_pre_commit_hook(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from domain import token

    t = token.generate()
    (tmp_path / "settings.py").write_text(f"TOKEN = '{t}'\n")
    found = run("scan", str(tmp_path))
    assert found.returncode == 1
    assert f"settings.py:1: a live Anthra token ({t[:12]}" in found.stdout
    assert t[12:] not in found.stdout + found.stderr
    (tmp_path / "settings.py").write_text("TOKEN = os.environ['ANTHRA_TOKEN']\n")
    assert run("scan", str(tmp_path)).returncode == 0
