"""What verifying a token answers, spelt once: the same three codes in process, over HTTP, and
for any instant of a key's past."""

from __future__ import annotations

from typing import Literal

Code = Literal["valid", "invalid_token", "insufficient_scope"]
