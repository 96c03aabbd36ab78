"""Reading a JSON body: nesting and repeated keys are judged as a full JSON parser would."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from litestar.exceptions import ValidationException

from api.json_body import MAX_NESTING, decode
from api.schemas import MintRequest

keys = st.sampled_from(["a", "b", r"\u0061", r"sc\"opes", "é", r"\ud83d\ude00", "😀", ""])
scalars = st.sampled_from(["1", "-0.5e3", "true", "null", '"x"', '"{[:]}"', r'"\\"', r'"\""'])


@st.composite
def documents(draw: st.DrawFn) -> str:
    """JSON text with keys that may repeat (in any spelling), wrapped in a chain of arrays and
    objects that may run past the bound."""
    text = draw(_trees())
    for wrapper in draw(
        st.lists(st.sampled_from(["[{}]", '{{"k": {}}}']), max_size=MAX_NESTING + 4)
    ):
        text = wrapper.format(text)
    return text


@st.composite
def _trees(draw: st.DrawFn) -> str:
    if draw(st.integers(0, 2)) == 0:
        return draw(scalars)
    if draw(st.booleans()):
        return "[" + ", ".join(draw(st.lists(_trees(), max_size=2))) + "]"
    pairs = draw(st.lists(st.tuples(keys, _trees()), max_size=3))
    return "{" + ", ".join(f'"{k}": {v}' for k, v in pairs) + "}"


def _reference(text: str) -> bool:
    """Whether Python's own parser finds a repeated key or nesting beyond the bound."""

    def unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        names = [k for k, _ in pairs]
        if len(names) != len(set(names)):
            raise ValueError("repeated")
        return dict(pairs)

    def depth(value: Any) -> int:
        if isinstance(value, dict):
            return 1 + max(map(depth, value.values()), default=0)
        if isinstance(value, list):
            return 1 + max(map(depth, value), default=0)
        return 0

    try:
        return depth(json.loads(text, object_pairs_hook=unique)) > MAX_NESTING
    except ValueError:
        return True


@settings(max_examples=200, derandomize=True, database=None)
@given(documents())
def test_repeated_keys_and_deep_nesting_are_refused_exactly_when_a_parser_sees_them(
    text: str,
) -> None:
    refused = False
    try:
        decode(text.encode(), Any)
    except ValidationException:
        refused = True
    assert refused == _reference(text), text


def test_the_body_is_decoded_into_the_handlers_type_with_no_coercion() -> None:
    assert decode(b'{"name": "CI", "scopes": ["books:read"]}', MintRequest) == MintRequest(
        name="CI", scopes=["books:read"]
    )
    with pytest.raises(ValidationException) as refused:
        decode(b'{"name": "CI", "scopes": ["books:read"], "expires_in_days": "30"}', MintRequest)
    assert refused.value.extra == [
        {"key": "expires_in_days", "message": "Expected `int | null`, got `str`"}
    ]


def test_nesting_is_refused_before_any_decoder_recurses() -> None:
    for body in [b"[" * 100_000, b'{"a": ' * 50_000]:
        with pytest.raises(ValidationException):
            decode(body, Any)
    # What msgspec alone would do with it
    with pytest.raises(RecursionError):
        msgspec.json.decode(b"[" * 100_000 + b"]" * 100_000)
