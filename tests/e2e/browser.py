"""Debian's Chromium driven by Playwright: found, or skipped (failed in CI) with how to get it."""

from __future__ import annotations

import os
import shutil

import pytest

from tests.conftest import IN_CI

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str:
    """Chromium's executable, or fail (CI) or skip (a developer machine) saying how to get it."""
    path = os.environ.get("ANTHRA_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    problem = None
    if not os.path.exists(path):
        problem = f"Chromium not found at {path}"
    else:
        try:
            import playwright  # noqa: F401
        except ImportError:
            problem = "the playwright package is not installed (./dev test installs it)"
    if problem:
        message = (
            f"{problem}. Install Debian's chromium (apt-get install chromium) or set "
            "ANTHRA_CHROMIUM to a Chromium binary to run the browser tests."
        )
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path
