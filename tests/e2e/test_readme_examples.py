"""Every shell and Python example in the README runs as written against a real server.

Each fenced `sh` or `python` block is run on its own, against a fresh ledger process (SQLite),
with what the README says its reader has: `$SESSION` (a signed-in browser's session cookie),
`$ANTHRA_URL`, and a key of theirs — `$KEY_ID`, its token in `$ANTHRA_TOKEN` and `$TOKEN`.
The README's `http://127.0.0.1:8000` is this server's URL, and `./dev` this repository's; the
reader works in a git repository with a change staged. A
block that cannot run says why in an HTML comment just above it (`<!-- not run … -->`).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.api_support import COOKIE, session_cookie
from tests.e2e.conftest import Secrets, StartServer

pytestmark = [pytest.mark.e2e]

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
_BLOCK = re.compile(r"^(<!-- not run[^>]*-->\n)?```(sh|python)\n(.*?)^```", re.S | re.M)
USER = "local-developer"


def examples() -> list[tuple[int, str, str]]:
    """(line, language, code) of every block the test runs."""
    text = README.read_text()
    found = []
    for match in _BLOCK.finditer(text):
        if match[1]:
            continue
        found.append((text[: match.start(2)].count("\n") + 1, match[2], match[3]))
    return found


EXAMPLES = examples()


def test_the_readme_has_examples_to_run() -> None:
    assert len(EXAMPLES) >= 8
    skipped = _BLOCK.findall(README.read_text())
    assert all("because" in s[0] or ":" in s[0] for s in skipped if s[0]), "say why not"


@pytest.mark.parametrize(
    ("line", "language", "code"), EXAMPLES, ids=[f"README.md:{line}" for line, _, _ in EXAMPLES]
)
def test_the_example_runs_as_written(
    line: int,
    language: str,
    code: str,
    sqlite_url: str,
    start_server: StartServer,
    secrets_seen: Secrets,
    tmp_path: Path,
) -> None:
    server = start_server(sqlite_url)
    session = session_cookie(USER)
    secrets_seen.cookies.append(session)
    minted = httpx.post(
        f"{server.url}/api/v1/keys",
        json={"name": "README reader", "scopes": ["account:read", "books:read"]},
        headers={"Cookie": f"{COOKIE}={session}", "Sec-Fetch-Site": "same-origin"},
    )
    assert minted.status_code == 201, minted.text
    key = minted.json()
    secrets_seen.tokens.append(key["token"])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHRA_", "AUTH_SECRET"))} | {
        "ANTHRA_DATABASE_URL": sqlite_url,
        "ANTHRA_URL": server.url,
        "SESSION": session,
        "KEY_ID": key["id"],
        "ANTHRA_TOKEN": key["token"],
        "TOKEN": key["token"],
        "PATH": f"{ROOT / '.venv' / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": str(ROOT / "client"),
    }
    code = code.replace("http://127.0.0.1:8000", server.url)
    code = code.replace("./dev ", f"{ROOT / 'dev'} ").replace("./client", str(ROOT / "client"))
    # The reader's folder is a git repository with a change staged (the pre-commit hook reads it).
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    (tmp_path / "notes.txt").write_text(f"the key {key['prefix']}… is for CI\n")
    subprocess.run(["git", "add", "notes.txt"], cwd=tmp_path, check=True)
    if language == "sh":
        command = ["bash", "-euo", "pipefail", "-c", code]
    else:
        command = [sys.executable, "-c", code]
    ran = subprocess.run(
        command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False
    )
    assert ran.returncode == 0, (
        f"README.md:{line} failed ({ran.returncode}):\n{code}\n--- stdout\n{ran.stdout[-2000:]}"
        f"\n--- stderr\n{ran.stderr[-3000:]}"
    )
