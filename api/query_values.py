"""Values the API reads from text that need more than a type, each with one grammar, one range and
one parser: instants (`since`, `until`, `as_of`) and whole numbers (`unused_days`, and the store
positions `cursor` and `after`)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any

from litestar.params import QueryParameter
from msgspec import Meta

from domain.errors import InvalidInput
from projections.audit_trail.view import MAX_POSITION

FIRST_YEAR = 1970
LAST_YEAR = 9998
# RFC 3339 date-time with its offset, years 1970-9998: every such instant is also one in UTC (an
# offset can move it by a day, never past year 1 or 9999, where Python's datetimes end).
INSTANT_PATTERN = (
    r"^(19[7-9][0-9]|[2-8][0-9]{3}|9[0-8][0-9]{2}|99[0-8][0-9]|999[0-8])-(0[1-9]|1[0-2])-"
    r"(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,9})?"
    r"(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$"
)
_INSTANT = re.compile(INSTANT_PATTERN)
# Digits, as many as the largest bound has (2**63 - 1 has 19): int() never reads a huge number.
_DIGITS = re.compile("[0-9]{1,19}")
INSTANT_HELP = (
    f"an RFC 3339 instant with its offset, years {FIRST_YEAR}-{LAST_YEAR}, "
    "e.g. 2026-11-28T12:00:00Z"
)

# The schema states the grammar; parse_instant checks it, and names the field when it fails.
_SCHEMA = {"format": "date-time", "pattern": INSTANT_PATTERN}
# In a body: the field of a Struct.
Instant = Annotated[str, Meta(max_length=64, description=INSTANT_HELP, extra_json_schema=_SCHEMA)]
# In a query: required, or optional.
_QUERY = QueryParameter(max_length=64, description=INSTANT_HELP, schema_extra=_SCHEMA)
InstantQuery = Annotated[str, _QUERY]
OptionalInstantQuery = Annotated[str | None, _QUERY]


def parse_instant(text: str, field: str) -> datetime:
    """An instant in UTC, or the caller's mistake, named with the field at fault."""
    if not _INSTANT.fullmatch(text):
        raise InvalidInput(field, INSTANT_HELP)
    try:
        instant = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(field, f"no such day: {INSTANT_HELP}") from None
    return instant.astimezone(UTC)


def whole_number(text: str, field: str, low: int, high: int) -> int:
    """Decimal ASCII digits, from low to high: no sign, space, exponent, fraction or other
    digits ("²" and "٣" are digits to str.isdigit). The one reading of every whole number the
    API and the command line take."""
    if not _DIGITS.fullmatch(text) or not low <= (number := int(text)) <= high:
        raise InvalidInput(field, f"a whole number from {low} to {high}, in decimal digits")
    return number


def position(text: str, field: str) -> int:
    """A store position: a cursor, the start of an export."""
    return whole_number(text, field, 0, MAX_POSITION)


def integer_schema(low: int, high: int) -> dict[str, Any]:
    """What a whole-number query parameter is, for the schema: it is read as text (so that `null`
    is never taken for an absent value) and parsed by whole_number."""
    return {"type": "integer", "minimum": low, "maximum": high}


PositionQuery = Annotated[
    str | None,
    QueryParameter(
        description="A store position: the `next` of the previous page, or the last exported",
        schema_extra=integer_schema(0, MAX_POSITION),
    ),
]
