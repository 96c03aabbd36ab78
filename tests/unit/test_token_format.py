"""The token format: ant_live_ + 44 characters of entropy + a 6-character CRC32 checksum."""

from __future__ import annotations

import base64
import zlib

from hypothesis import given
from hypothesis import strategies as st

from domain import token

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
tokens = st.builds(lambda _: token.generate(), st.integers())


def test_a_token_has_the_documented_shape() -> None:
    t = token.generate()
    assert t.startswith("ant_live_")
    assert len(t) == 59
    assert all(c in ALPHABET for c in t[len("ant_live_") :])
    # The checksum is CRC32 of everything before it, 4 big-endian bytes, base64url, no padding
    crc = zlib.crc32(t[:53].encode()).to_bytes(4, "big")
    assert t[53:] == base64.urlsafe_b64encode(crc).decode().rstrip("=")


@given(tokens)
def test_generated_tokens_parse_and_checksum(t: str) -> None:
    assert token.is_well_formed(t)
    assert token.display_prefix(t) == t[:12]
    assert len(token.digest(t)) == 32


@given(tokens, st.data())
def test_any_one_character_change_fails_the_check(t: str, data: st.DataObject) -> None:
    position = data.draw(st.integers(min_value=0, max_value=len(t) - 1))
    replacement = data.draw(st.sampled_from(ALPHABET + "!.~ ").filter(lambda c: c != t[position]))
    changed = t[:position] + replacement + t[position + 1 :]
    assert not token.is_well_formed(changed)


@given(st.text(max_size=80))
def test_arbitrary_text_is_never_well_formed(text: str) -> None:
    # Anything not made by generate() fails; a random string matching the checksum is ~2^-32.
    assert not token.is_well_formed(text) or text.startswith("ant_live_")


def test_wrong_length_prefix_or_alphabet_is_rejected_without_lookup() -> None:
    t = token.generate()
    assert not token.is_well_formed(t[:-1])
    assert not token.is_well_formed(t + "A")
    assert not token.is_well_formed("ant_test_" + t[9:])
    assert not token.is_well_formed(t[:20] + "=" + t[21:])
    assert not token.is_well_formed("")
    assert not token.is_well_formed("ant_live_" + "é" * 50)


def test_two_tokens_differ() -> None:
    assert len({token.generate() for _ in range(1000)}) == 1000


@given(tokens, st.text(max_size=20), st.text(max_size=20))
def test_text_around_a_token_still_holds_it(t: str, before: str, after: str) -> None:
    assert token.holds_token(before + t + after)
    assert token.holds_token(before + t[len(token.PREFIX) :] + after)
