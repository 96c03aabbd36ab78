"""The edge: size limits, what a trusted proxy may tell us, which hosts are served, origins."""

from __future__ import annotations

from typing import Any

import pytest

from api.edge import origin, origin_of_url
from api.front_door import FrontDoor
from infra.settings import Settings
from tests.api_support import ORIGIN, SAME_ORIGIN, SECRET, api_client, from_peer, mint, signed_in_as

Scope = dict[str, Any]


class Inner:
    """The app behind the edge: records the scope it was given and answers 200."""

    def __init__(self) -> None:
        self.scopes: list[Scope] = []

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        self.scopes.append(scope)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def request(
    edge: FrontDoor,
    headers: list[tuple[bytes, bytes]],
    client: str = "127.0.0.1",
    path: bytes = b"/",
    query: bytes = b"",
) -> tuple[int, bytes]:
    """One request through the edge; the status and body it answered."""
    import anyio

    sent: list[dict[str, Any]] = []
    scope: Scope = {
        "type": "http",
        "method": "GET",
        "scheme": "http",
        "path": path.decode(),
        "raw_path": path,
        "query_string": query,
        "headers": headers,
        "client": (client, 40000),
        "server": ("127.0.0.1", 8000),
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    anyio.run(edge, scope, receive, send)  # type: ignore[arg-type]
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


def edge_with(inner: Inner, **settings: Any) -> FrontDoor:
    return FrontDoor.configured(inner, Settings(database_url="memory:", **settings))  # type: ignore[arg-type]


HOST = [(b"host", b"ledger.example")]


# Size limits


def test_oversized_headers_are_431_with_the_json_body_and_never_served() -> None:
    with api_client() as client:
        # A 1 MB header, and 1,000 small ones
        for headers in (
            {"X-Big": "a" * 1_000_000},
            {f"X-Many-{i}": "x" for i in range(1000)},
        ):
            for path in ("/healthz", "/api/v1/account/whoami", "/v1/authz", "/nowhere"):
                response = client.get(path, headers=headers)
                assert response.status_code == 431, path
                assert response.json() == {
                    "error": "request_headers_too_large",
                    "error_description": "the request's headers exceed the limit of 100 fields "
                    "or 16384 bytes of names and values",
                }
                assert response.headers["content-type"] == "application/json"
        # Just under both limits is served
        near = {f"x-h{i:02}": "v" * 150 for i in range(90)}
        assert client.get("/healthz", headers=near).status_code == 200


def test_the_header_limits_are_settings() -> None:
    inner = Inner()
    edge = edge_with(inner, max_headers=10, max_header_bytes=2048)
    assert request(edge, [*HOST, (b"x-a", b"b" * 1900)])[0] == 200
    assert request(edge, [*HOST, (b"x-a", b"b" * 2100)])[0] == 431
    assert request(edge, HOST + [(b"x-%d" % i, b"1") for i in range(9)])[0] == 200
    assert request(edge, HOST + [(b"x-%d" % i, b"1") for i in range(10)])[0] == 431
    assert len(inner.scopes) == 2


def test_a_request_target_over_8_kib_is_414() -> None:
    inner = Inner()
    edge = edge_with(inner)
    assert request(edge, HOST, path=b"/" + b"a" * 8000)[0] == 200
    status, body = request(edge, HOST, path=b"/a", query=b"q=" + b"a" * 9000)
    assert status == 414
    assert b'"error":"uri_too_long"' in body


# Trusted proxies


def test_forwarded_headers_from_a_peer_that_is_not_a_trusted_proxy_are_ignored() -> None:
    inner = Inner()
    # None trusted by default: not even loopback
    edge = edge_with(inner)
    forged = [
        (b"host", b"ledger.example"),
        (b"x-forwarded-for", b"6.6.6.6"),
        (b"x-forwarded-proto", b"https"),
        (b"x-forwarded-host", b"evil.example"),
        (b"forwarded", b"for=6.6.6.6;proto=https;host=evil.example"),
    ]
    for peer in ("127.0.0.1", "::1", "10.0.0.9"):
        request(edge, list(forged), client=peer)
        scope = inner.scopes[-1]
        assert scope["client"][0] == peer
        assert scope["scheme"] == "http"
        assert (b"host", b"ledger.example") in scope["headers"]
    # A configured proxy's neighbour is not trusted either
    edge = edge_with(inner, trusted_proxies=("10.0.0.1",))
    request(edge, list(forged), client="10.0.0.2")
    assert inner.scopes[-1]["client"][0] == "10.0.0.2"


def test_a_trusted_proxy_names_the_client_scheme_and_host() -> None:
    inner = Inner()
    edge = edge_with(inner, trusted_proxies=("127.0.0.1", "10.0.0.0/8"))

    def seen(*headers: tuple[bytes, bytes], peer: str = "127.0.0.1") -> Scope:
        request(edge, [(b"host", b"ledger:8000"), *headers], client=peer)
        return inner.scopes[-1]

    # The client the proxy saw
    assert seen((b"x-forwarded-for", b"6.6.6.6"))["client"] == ("6.6.6.6", 0)
    # A chain: the rightmost address that is not a trusted proxy; the client's own forgery to
    # its left is never believed
    assert seen((b"x-forwarded-for", b"1.1.1.1, 6.6.6.6, 10.0.0.7"))["client"][0] == "6.6.6.6"
    assert (
        seen((b"x-forwarded-for", b"1.1.1.1"), (b"x-forwarded-for", b"6.6.6.6"))["client"][0]
        == "6.6.6.6"
    )
    # Garbage stops the walk at the last trusted hop
    assert seen((b"x-forwarded-for", b"6.6.6.6, nonsense"))["client"][0] == "127.0.0.1"
    assert seen((b"x-forwarded-for", b"nonsense, 6.6.6.6"))["client"][0] == "6.6.6.6"
    # Ports and IPv6 forms; an IPv4-mapped peer is the IPv4 proxy
    assert seen((b"x-forwarded-for", b"6.6.6.6:5555"))["client"][0] == "6.6.6.6"
    assert seen((b"x-forwarded-for", b"[2001:db8::1]:80"))["client"][0] == "2001:db8::1"
    assert seen((b"x-forwarded-for", b"6.6.6.6"), peer="::ffff:127.0.0.1")["client"][0] == (
        "6.6.6.6"
    )
    # Scheme and host: the nearest proxy's value, checked
    assert seen((b"x-forwarded-proto", b"https"))["scheme"] == "https"
    assert seen((b"x-forwarded-proto", b"https, http"))["scheme"] == "http"
    assert seen((b"x-forwarded-proto", b"gopher"))["scheme"] == "http"
    hosts = seen((b"x-forwarded-host", b"api.anthra.example"))["headers"]
    assert [v for n, v in hosts if n == b"host"] == [b"api.anthra.example"]
    hosts = seen((b"x-forwarded-host", b'evil", x="y'))["headers"]
    assert [v for n, v in hosts if n == b"host"] == [b"ledger:8000"]
    # RFC 7239 Forwarded is not read, even from a trusted proxy
    assert seen((b"forwarded", b"for=6.6.6.6"))["client"][0] == "127.0.0.1"


def test_the_audit_trail_records_the_client_a_trusted_proxy_names_and_no_other() -> None:
    forged = {"X-Forwarded-For": "6.6.6.6"}
    for trusted, expected in (((), "127.0.0.1"), (("127.0.0.1",), "6.6.6.6")):
        settings = Settings(
            database_url="memory:",
            auth_secrets=(SECRET,),
            public_url=ORIGIN,
            trusted_proxies=trusted,
        )
        with api_client(settings) as client:
            from_peer(client, "127.0.0.1")
            key = client.post(
                "/api/v1/keys",
                json={"name": "audited", "scopes": ["books:read"]},
                headers=SAME_ORIGIN | signed_in_as("alice") | forged,
            ).json()
            history = client.get(f"/api/v1/keys/{key['id']}/history", headers=signed_in_as("alice"))
            assert history.json()["events"][0]["context"]["client_ip"] == expected


# Hosts


def test_outside_the_allowed_hosts_a_request_is_421_and_no_url_is_built_from_it() -> None:
    settings = Settings(
        database_url="memory:", auth_secrets=(SECRET,), allowed_hosts=("testserver.local",)
    )
    with api_client(settings) as client:
        assert client.get("/healthz").status_code == 200
        metadata = client.get("/.well-known/oauth-protected-resource")
        assert metadata.json()["resource"] == "http://testserver.local"
        assert client.get("/healthz", headers={"Host": "TestServer.Local:80"}).status_code == 200
        for host in ("evil.example", "testserver.local.evil.example", 'x", y="z', ""):
            for path in ("/.well-known/oauth-protected-resource", "/api/v1/keys", "/healthz"):
                refused = client.get(path, headers={"Host": host})
                assert refused.status_code == 421, (host, path)
                assert refused.json()["error"] == "misdirected_request"
                assert "evil" not in refused.text


def test_with_a_public_url_no_host_header_reaches_a_url() -> None:
    settings = Settings(
        database_url="memory:", auth_secrets=(SECRET,), public_url="https://api.anthra.example"
    )
    with api_client(settings) as client:
        evil = {"Host": "evil.example"}
        metadata = client.get("/.well-known/oauth-protected-resource", headers=evil)
        assert metadata.json()["resource"] == "https://api.anthra.example"
        challenge = client.get("/api/v1/keys", headers=evil).headers["www-authenticate"]
        assert challenge.endswith(
            'resource_metadata="https://api.anthra.example/.well-known/oauth-protected-resource"'
        )


def test_in_development_mode_a_host_that_is_not_a_host_never_reaches_a_header() -> None:
    with api_client(Settings(database_url="memory:")) as client:
        assert client.app.state.dev_mode
        for path in ("/api/v1/keys", "/.well-known/oauth-protected-resource"):
            injected = client.get(path, headers={"Host": 'x", error="forged'})
            assert injected.status_code == 400
            assert "forged" not in str(injected.headers)
        # A loopback Host is used as it is
        challenge = client.get("/api/v1/keys", headers={"Host": "127.0.0.1:8000"})
        assert challenge.headers["www-authenticate"].endswith(
            'resource_metadata="http://127.0.0.1:8000/.well-known/oauth-protected-resource"'
        )


# Same origin


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("http://Example.COM", "http://example.com"),
        ("http://example.com:80", "http://example.com"),
        ("https://example.com:443/", "https://example.com"),
        ("https://example.com:8443/path", "https://example.com:8443"),
        ("http://[::1]:8000", "http://[::1]:8000"),
        ("ftp://example.com", ""),
        ("null", ""),
        ("https://user@example.com", ""),
        ("https://exa mple.com", ""),
    ],
)
def test_origins_compare_scheme_host_and_port_with_default_ports_dropped(
    given: str, expected: str
) -> None:
    assert origin_of_url(given) == expected


def test_an_origin_with_another_scheme_or_port_is_cross_site() -> None:
    with api_client() as client:  # served as http://testserver.local
        for other in (
            "https://testserver.local",
            "http://testserver.local:8080",
            "http://testserver.local.evil.example",
            "http://evil.example",
        ):
            response = client.post(
                "/api/v1/keys",
                json={"name": "csrf", "scopes": ["books:read"]},
                headers={"Origin": other} | signed_in_as("alice"),
            )
            assert response.status_code == 403, other
            assert response.json()["error"] == "cross_site_request"
        # The default port written out is the same origin
        same = client.post(
            "/api/v1/keys",
            json={"name": "ui", "scopes": ["books:read"]},
            headers={"Origin": "http://testserver.local:80"} | signed_in_as("alice"),
        )
        assert same.status_code == 201


def test_without_a_public_url_the_origin_is_the_requests_own_trusted_scheme_and_host() -> None:
    settings = Settings(
        database_url="memory:",
        auth_secrets=(SECRET,),
        allowed_hosts=("app.anthra.example",),
        trusted_proxies=("127.0.0.1",),
    )
    body = {"name": "ui", "scopes": ["books:read"]}
    with api_client(settings) as client:
        from_peer(client, "127.0.0.1")
        # TLS ends at the proxy, which says so: the page's https origin is this origin
        behind_tls = {"Host": "app.anthra.example", "X-Forwarded-Proto": "https"}
        for origin_header, status in (
            ("https://app.anthra.example", 201),
            ("http://app.anthra.example", 403),
        ):
            response = client.post(
                "/api/v1/keys",
                json=body,
                headers={"Origin": origin_header} | behind_tls | signed_in_as("alice"),
            )
            assert response.status_code == status, origin_header
        # The same claim from a peer that is not the proxy is not believed
        from_peer(client, "10.1.2.3")
        response = client.post(
            "/api/v1/keys",
            json=body,
            headers={"Origin": "https://app.anthra.example"} | behind_tls | signed_in_as("alice"),
        )
        assert response.status_code == 403


def test_the_allowed_origins_are_an_allow_list_compared_as_origins() -> None:
    settings = Settings(
        database_url="memory:",
        auth_secrets=(SECRET,),
        public_url="https://api.anthra.example",
        allowed_origins=("https://app.anthra.example:443",),
    )
    with api_client(settings) as client:
        for origin_header, status in (
            ("https://app.anthra.example", 201),
            ("https://api.anthra.example", 201),
            ("http://app.anthra.example", 403),
            ("http://testserver.local", 403),  # the Host is not the public origin
        ):
            response = client.post(
                "/api/v1/keys",
                json={"name": "ui", "scopes": ["books:read"]},
                headers={"Origin": origin_header} | signed_in_as("alice"),
            )
            assert response.status_code == status, origin_header
        assert mint(client)["token"]


def test_origin_spelling() -> None:
    assert origin("HTTPS", "A.Example:443") == "https://a.example"
    assert origin("http", "a.example:0080") == "http://a.example"
    assert origin("http", "a.example:x") == ""
    assert origin("http", "a_b.example") == ""
