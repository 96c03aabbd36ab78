"""Finding leaked tokens in files: only live-format tokens with a valid checksum, shown by their
12-character prefix and where they are."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

from api.scan import run, scan
from domain import token


def test_a_token_is_found_with_its_line_and_only_its_prefix_is_printed(tmp_path: Path) -> None:
    # A token pasted into a config file, two lines down
    t = token.generate()
    (tmp_path / "deploy.env").write_text(f"# deploy\nREGION=eu\nANTHRA_TOKEN={t}\n")
    out = io.StringIO()
    assert run([str(tmp_path)], out) == 1
    printed = out.getvalue()
    assert printed == f"{tmp_path / 'deploy.env'}:3: a live Anthra token ({t[:12]}…)\n"
    assert t[12:] not in printed


def test_look_alikes_are_not_tokens(tmp_path: Path) -> None:
    t = token.generate()
    look_alikes = [
        "ant_live_" + "A" * 50,  # the right shape, a wrong checksum
        t[:-1] + ("A" if t[-1] != "A" else "B"),  # one character changed
        t + "x",  # glued to more of the alphabet
        "x" + t[1:],  # not the prefix
        t[:40],  # cut short
    ]
    (tmp_path / "notes.md").write_text("\n".join(look_alikes))
    assert scan([str(tmp_path)]) == []


def test_tokens_in_quotes_urls_and_json_are_found(tmp_path: Path) -> None:
    tokens = [token.generate() for _ in range(3)]
    (tmp_path / "a.json").write_text(f'{{"token": "{tokens[0]}"}}')
    (tmp_path / "b.sh").write_text(f"curl -H 'Authorization: Bearer {tokens[1]}' https://x\n")
    (tmp_path / "c.py").write_text(f"TOKEN='{tokens[2]}'  # oops\n")
    assert sorted(f.prefix for f in scan([str(tmp_path)])) == sorted(t[:12] for t in tokens)


def test_version_control_and_dependency_folders_are_skipped(tmp_path: Path) -> None:
    for folder in (".git", "node_modules", ".venv"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "x").write_text(token.generate())
    assert scan([str(tmp_path)]) == []
    assert run([str(tmp_path)], io.StringIO()) == 0


@pytest.mark.parametrize("seed", range(20))
def test_the_published_pattern_matches_every_generated_token(seed: int) -> None:
    t = token.generate()
    assert re.fullmatch(token.TOKEN_PATTERN, t)
    assert list(token.find_tokens(f"x {t} y")) == [(2, t)]
