"""The gateway's route policy: matching, specificity, default deny, normalisation, load errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infra.policy import AmbiguousPath, Policy, PolicyError, normalise_path, path_of

DEPLOYED = Path(__file__).resolve().parents[2] / "deploy" / "policy.toml"

POLICY = """
[[route]]
method = "GET"
path = "/api/v1/books/*"
scope = "books:read"

[[route]]
method = ["PUT", "DELETE"]
path = "/api/v1/books/*"
scope = "books:write"

[[route]]
method = "POST"
path = "/api/v1/books/*/publish"
scope = "publish:write"

[[route]]
method = "POST"
path = "/api/v1/books/*/*"
scope = "books:write"

[[route]]
method = "POST"
path = "/api/v1/books/*/chapters/*/generate/*"
scope = ["generation:run", "books:write"]

[[route]]
method = "GET"
path = "/api/v1/analytics/**"
scope = "analytics:read"

[[route]]
method = "GET"
path = "/api/v1/analytics/books/*"
scope = "analytics:read"

[[route]]
method = "*"
path = "/api/v1/analytics/books/*"
scope = "account:read"

[[route]]
method = "GET"
path = "/public/**"
public = true
"""


@pytest.fixture
def policy() -> Policy:
    return Policy.from_toml(POLICY)


def rule_index(policy: Policy, method: str, target: str) -> int | None:
    rule = policy.match(method, target)
    return None if rule is None else rule.index


def test_a_rule_matches_its_method_and_one_segment_per_star(policy: Policy) -> None:
    rule = policy.match("GET", "/api/v1/books/42")
    assert rule is not None
    assert (rule.pattern, rule.scopes, rule.public) == ("/api/v1/books/*", ("books:read",), False)
    assert rule_index(policy, "DELETE", "/api/v1/books/42") == 2
    assert rule_index(policy, "get", "/api/v1/books/42") == 1  # methods are case-insensitive
    # GET covers HEAD; nothing else is implied
    assert rule_index(policy, "HEAD", "/api/v1/books/42") == 1
    assert rule_index(policy, "PATCH", "/api/v1/books/42") is None
    # `*` is exactly one non-empty segment
    assert rule_index(policy, "GET", "/api/v1/books") is None
    assert rule_index(policy, "GET", "/api/v1/books/42/chapters") is None


def test_a_list_of_scopes_is_kept_in_the_canonical_order(policy: Policy) -> None:
    rule = policy.match("POST", "/api/v1/books/1/chapters/2/generate/narrate")
    assert rule is not None
    assert rule.scopes == ("books:write", "generation:run")


def test_double_star_matches_any_number_of_segments_even_none(policy: Policy) -> None:
    for target in ("/public", "/public/", "/public/a", "/public/a/b/c"):
        rule = policy.match("GET", target)
        assert rule is not None, target
        assert rule.public
    assert policy.match("GET", "/publicity") is None


def test_the_most_specific_rule_wins(policy: Policy) -> None:
    # Fewer wildcards beat more: publish is named, not a `*`
    assert rule_index(policy, "POST", "/api/v1/books/1/publish") == 3
    assert rule_index(policy, "POST", "/api/v1/books/1/outline") == 4
    # A bounded pattern beats a trailing `**`, whatever the order in the file
    assert rule_index(policy, "GET", "/api/v1/analytics/books/1") == 7
    assert rule_index(policy, "GET", "/api/v1/analytics/books/1/chapters/2") == 6
    # An exact method beats `*` on the same pattern
    assert rule_index(policy, "DELETE", "/api/v1/analytics/books/1") == 8


def test_a_catch_all_never_outranks_a_bounded_route() -> None:
    policy = Policy.from_toml(
        """
        [[route]]
        method = "*"
        path = "/**"
        public = true

        [[route]]
        method = "GET"
        path = "/api/v1/books/*/chapters/*"
        scope = "books:read"
        """
    )
    rule = policy.match("GET", "/api/v1/books/1/chapters/2")
    assert rule is not None
    assert not rule.public


def test_unknown_routes_and_methods_are_denied(policy: Policy) -> None:
    assert policy.match("GET", "/api/v1/keys") is None
    assert policy.match("POST", "/api/v1/books/1") is None
    assert policy.match("GET", "/") is None
    assert Policy.from_toml("").match("GET", "/anything") is None


@pytest.mark.parametrize(
    ("target", "path"),
    [
        ("/api/v1/books/42?format=epub", "/api/v1/books/42"),
        ("/api/v1/books/42#top", "/api/v1/books/42"),
        ("/api/v1/books/42/", "/api/v1/books/42"),  # one trailing slash
        ("/api/v1/b%6Foks/42", "/api/v1/books/42"),
        ("/api/v1/books/%25", "/api/v1/books/%"),  # decoded once only
        ("/public/caf%C3%A9", "/public/café"),
        ("http://gateway.example/api/v1/books/42?x=1", "/api/v1/books/42"),  # absolute form
        ("/", "/"),
    ],
)
def test_the_path_is_normalised_before_matching(target: str, path: str) -> None:
    assert normalise_path(target) == path


@pytest.mark.parametrize(
    "target",
    [
        "/public/../api/v1/books/42",
        "/public/./x",
        "/public/%2e%2e/api/v1/books/42",
        "/public/%2E%2e/api/v1/books/42",
        "/public/.%2e/api",
        "/public/%252e%252e/api",  # a second decoding downstream would make it ..
        "/public/..;jsessionid=1/api",  # .. to a servlet container
        "/public/%2e%2e%3b/api",
        "/public/%EF%BC%8E%EF%BC%8E/api",  # fullwidth dots, folded to .. by some servers
        "/public/.../api",
        "/public/a%5Cb",
        "/public/a\\b",
        "/public/a%2Fb",  # one segment to a server that keeps %2F, two to one that decodes it
        "/public/a%2fb",
        "/public/a%252Fb",
        "/public/a%EF%BC%8Fb",  # a fullwidth slash
        "/public/%2541",  # encoded twice: a server decoding twice reads another path
        "//api/v1/books/42",  # empty segments: a server may or may not merge them
        "/public//api/v1/books/42",
        "/public/x//",
        "/public/%00",
        "/public/%0d%0a",
        "/public/%ff",  # not UTF-8
        "/public/a b",
        "/public/café",  # raw non-ASCII is not a valid request target
        "public/a",
        "ftp://host/public/a",
        "",
    ],
)
def test_targets_that_could_be_read_two_ways_are_denied(policy: Policy, target: str) -> None:
    assert normalise_path(target) is None
    assert policy.match("GET", target) is None
    with pytest.raises(AmbiguousPath):
        path_of(target)


def test_load_reads_a_file_and_names_it_in_errors(tmp_path: Path) -> None:
    good = tmp_path / "policy.toml"
    good.write_text(POLICY)
    assert len(Policy.load(good).rules) == 9
    bad = tmp_path / "bad.toml"
    bad.write_text('[[route]]\nmethod = "GET"\npath = "/x"\n')
    with pytest.raises(PolicyError, match=f"^{bad}: route 1: scope: "):
        Policy.load(bad)
    with pytest.raises(PolicyError, match="cannot read the policy file"):
        Policy.load(tmp_path / "missing.toml")


@pytest.mark.parametrize(
    ("routes", "message"),
    [
        ('method = "GET"\npath = "/x"', r"route 2: scope: .*public = true; found neither"),
        ('method = "GET"\npath = "/x"\nscope = "books:admin"', r"route 2: scope: unknown scope"),
        ('method = "GET"\npath = "/x"\nscope = []', r"route 2: scope: must be"),
        (
            'method = "GET"\npath = "/x"\nscope = "books:read"\npublic = true',
            r"route 2: scope: a public route needs no scope",
        ),
        ('method = "GET"\npath = "/x"\npublic = "yes"', r"route 2: public: must be true or false"),
        ('path = "/x"\nscope = "books:read"', r"route 2: method: missing"),
        ('method = "FETCH"\npath = "/x"\nscope = "books:read"', r"route 2: method: unknown"),
        ('method = ["*", "GET"]\npath = "/x"\nscope = "books:read"', r"route 2: method: \"\*\""),
        ('method = []\npath = "/x"\nscope = "books:read"', r"route 2: method: must be"),
        ('method = "GET"\nscope = "books:read"', r"route 2: path: missing"),
        ('method = "GET"\npath = "x/y"\nscope = "books:read"', r"route 2: path: .*start with /"),
        ('method = "GET"\npath = "/x/b*"\nscope = "books:read"', r"route 2: path: .*whole segment"),
        ('method = "GET"\npath = "/**/x"\nscope = "books:read"', r"route 2: path: .*last segment"),
        ('method = "GET"\npath = "/x/../y"\nscope = "books:read"', r"route 2: path: .*dot segment"),
        ('method = "GET"\npath = "/x?y=1"\nscope = "books:read"', r"route 2: path: .*'\?'"),
        ('method = "GET"\npath = "/x%20y"\nscope = "books:read"', r"route 2: path: .*'%'"),
        ('method = "GET"\npath = "/x//y"\nscope = "books:read"', r"route 2: path: .*empty segment"),
        ('method = "GET"\npath = "/x y"\nscope = "books:read"', r"route 2: path: .*space"),
        ('method = "GET"\npath = "/x"\nscopes = "books:read"', r"route 2: scopes: unknown field"),
        ('method = "HEAD"\npath = "/ok/"\nscope = "books:read"', r"route 2: path: HEAD /ok is"),
    ],
)
def test_a_wrong_route_is_refused_at_load_naming_its_index_and_field(
    routes: str, message: str
) -> None:
    text = f'[[route]]\nmethod = "GET"\npath = "/ok"\nscope = "books:read"\n\n[[route]]\n{routes}\n'
    with pytest.raises(PolicyError, match=message):
        Policy.from_toml(text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[route]\n", "not valid TOML"),
        ("route = 1\n", "array of tables"),
        ("routes = []\n", "unknown top-level key 'routes'"),
        ("route = [1]\n", "route 1: route: each"),
    ],
)
def test_a_wrong_document_is_refused(text: str, message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        Policy.from_toml(text)


def test_the_deployed_policy_loads_and_guards_each_scope() -> None:
    policy = Policy.load(DEPLOYED)
    expected = {
        ("GET", "/api/v1/books"): ("books:read",),
        ("HEAD", "/api/v1/books/7/chapters/3"): ("books:read",),
        ("GET", "/api/v1/books/7/export/epub"): ("books:read",),
        ("POST", "/api/v1/books"): ("books:write",),
        ("DELETE", "/api/v1/books/7/chapters/3"): ("books:write",),
        ("PUT", "/api/v1/books/7/outline"): ("books:write",),
        ("POST", "/api/v1/books/7/generate/outline"): ("generation:run",),
        ("POST", "/api/v1/books/7/chapters/3/generate/narrate"): ("generation:run",),
        ("POST", "/api/v1/books/7/publish"): ("publish:write",),
        ("PUT", "/api/v1/books/7/visibility"): ("publish:write",),
        ("GET", "/api/v1/profile"): ("account:read",),
        ("GET", "/api/v1/usage/2026-11"): ("account:read",),
        ("GET", "/api/v1/analytics/books/7/chapters/3"): ("analytics:read",),
    }
    for (method, target), scopes in expected.items():
        rule = policy.match(method, target)
        assert rule is not None, (method, target)
        assert rule.scopes == scopes, (method, target)
    public = policy.match("GET", "/api/v1/published/books/7")
    assert public is not None
    assert public.public
    for method, target in [
        ("POST", "/api/v1/published/books/7"),
        ("GET", "/api/v1/keys"),
        ("GET", "/v1/authz"),
        ("POST", "/api/v1/books/7"),
    ]:
        assert policy.match(method, target) is None, (method, target)


# The compiled lookup


_SEGMENTS = st.sampled_from(["api", "v1", "books", "b-1", "chapters", "publish", "x"])
_PATTERN_SEGMENTS = st.one_of(_SEGMENTS, st.just("*"))


@st.composite
def _policies(draw: st.DrawFn) -> str:
    routes = []
    for _ in range(draw(st.integers(1, 12))):
        segments = draw(st.lists(_PATTERN_SEGMENTS, max_size=4))
        if draw(st.booleans()):
            segments.append("**")
        method = draw(st.sampled_from(['"GET"', '"POST"', '"*"', '["GET", "DELETE"]']))
        routes.append(
            f'[[route]]\nmethod = {method}\npath = "/{"/".join(segments)}"\nscope = "books:read"\n'
        )
    return "\n".join(routes)


@settings(max_examples=200, deadline=None)
@given(
    text=_policies(),
    method=st.sampled_from(["GET", "HEAD", "POST", "DELETE", "PUT"]),
    path=st.lists(_SEGMENTS, max_size=5),
)
def test_the_compiled_lookup_answers_as_trying_every_rule_in_order(
    text: str, method: str, path: list[str]
) -> None:
    try:
        policy = Policy.from_toml(text)
    except PolicyError:
        return  # two routes with one pattern and method: refused at load, nothing to match
    segments = tuple(path)
    first = next((rule for rule in policy.rules if rule.matches(method, segments)), None)
    assert policy.match_normalised(method, "/" + "/".join(path)) is first
