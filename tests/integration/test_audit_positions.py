"""Store positions from a query reach SQLite and PostgreSQL only when they fit their 64 bits."""

from __future__ import annotations

import pytest

from infra.settings import Settings
from tests.api_support import ORIGIN, SECRET, api_client, mint, signed_in_as


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> str:
    fixture = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    return str(request.getfixturevalue(fixture))


def test_a_position_past_64_bits_is_a_400_and_the_last_one_reads_nothing(database_url: str) -> None:
    settings = Settings(database_url=database_url, auth_secrets=(SECRET,), public_url=ORIGIN)
    with api_client(settings) as client:
        mint(client)
        alice = signed_in_as("alice")
        # One past the largest: refused before the store sees it, naming the parameter
        for path, field in [("/api/v1/audit", "cursor"), ("/api/v1/audit/export", "after")]:
            response = client.get(path, params={field: str(2**63)}, headers=alice)
            assert response.status_code == 400, response.text
            assert response.json()["field"] == field
        # The largest itself: a page with nothing after it
        page = client.get(
            "/api/v1/audit", params={"cursor": str(2**63 - 1), "order": "oldest"}, headers=alice
        )
        assert page.status_code == 200 and page.json()["events"] == []
        export = client.get("/api/v1/audit/export", params={"after": str(2**63 - 1)}, headers=alice)
        assert export.status_code == 200 and export.text == ""
