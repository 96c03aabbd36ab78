"""`anthra-keys scan PATH…`: find live-format tokens in files before they are committed.

A match is the prefix, 50 characters of the token alphabet and a valid checksum, so the false
positives are about one in four billion random look-alikes. Only `file:line` and the token's
12-character prefix are printed; the exit status is 1 when anything was found, so it serves as a
pre-commit hook.
"""

from __future__ import annotations

import os
import sys
from bisect import bisect_right
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from domain.token import display_prefix, find_tokens

# Files larger than this are not text a person commits a token into; skipping them keeps a scan
# of a repository quick.
MAX_FILE_BYTES = 5 * 2**20
_SKIPPED_DIRECTORIES = frozenset({".git", ".hg", ".svn", "node_modules", ".venv", "__pycache__"})


@dataclass(frozen=True, slots=True)
class Finding:
    path: str
    line: int
    prefix: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: a live Anthra token ({self.prefix}…)"


def files(paths: Sequence[str]) -> Iterator[Path]:
    """Every regular file under the paths, skipping version-control and dependency folders."""
    for given in paths:
        root = Path(given)
        if root.is_file():
            yield root
            continue
        for directory, subdirectories, names in os.walk(root):
            subdirectories[:] = sorted(d for d in subdirectories if d not in _SKIPPED_DIRECTORIES)
            for name in sorted(names):
                path = Path(directory) / name
                if path.is_file() and not path.is_symlink():
                    yield path


def scan_text(path: str, text: str) -> Iterator[Finding]:
    line_starts = [0]
    for found in _newlines(text):
        line_starts.append(found + 1)
    for offset, token in find_tokens(text):
        line = _line_of(line_starts, offset)
        yield Finding(path, line, display_prefix(token))


def scan(paths: Sequence[str]) -> list[Finding]:
    findings: list[Finding] = []
    for path in files(paths):
        try:
            if path.stat().st_size > MAX_FILE_BYTES:
                continue
            raw = path.read_bytes()
        except OSError:
            continue
        if b"ant_live_" not in raw:
            continue
        findings += scan_text(str(path), raw.decode("utf-8", "replace"))
    return findings


def run(paths: Sequence[str], out: object = sys.stdout) -> int:
    findings = scan(paths or ["."])
    for finding in findings:
        print(finding, file=out)  # type: ignore[call-overload]
    if findings:
        print(
            f"anthra-keys scan: {len(findings)} token(s) found; revoke each at /account/api-keys "
            "(a token that reached a commit must be treated as leaked) and remove it",
            file=sys.stderr,
        )
    return 1 if findings else 0


def _newlines(text: str) -> Iterable[int]:
    start = text.find("\n")
    while start != -1:
        yield start
        start = text.find("\n", start + 1)


def _line_of(line_starts: list[int], offset: int) -> int:
    return bisect_right(line_starts, offset)
