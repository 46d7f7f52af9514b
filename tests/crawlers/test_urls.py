from __future__ import annotations

from urllib.parse import urljoin

import pytest

from crawlers.urls import (
    InvalidURLError,
    ReferenceResolver,
    host_key,
    is_private_address,
    is_private_ip,
    normalize_url,
    path_pattern,
    query_family,
    remove_dot_segments,
    strip_session_ids,
    trap_reason,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("HTTP://Example.COM:80/a/./b/../c?b=2&a=1#frag", "http://example.com/a/c?b=2&a=1"),
        ("https://example.com:443", "https://example.com/"),
        ("https://example.com:8443/x", "https://example.com:8443/x"),
        ("http://ex.com/%7euser/%2f%41", "http://ex.com/~user/%2FA"),
        ("http://ex.com/caf\u00e9 x?q=a b", "http://ex.com/caf%C3%A9%20x?q=a%20b"),
        ("http://ex.com/100%", "http://ex.com/100%25"),
        ("http://b\u00fccher.de/", "http://xn--bcher-kva.de/"),
        ("http://[::1]:8080/x", "http://[::1]:8080/x"),
        ("http://example.com./", "http://example.com/"),
        ("  http://ex.com/a  ", "http://ex.com/a"),
    ],
)
def test_normalize_url(raw: str, expected: str) -> None:
    assert normalize_url(raw) == expected


def test_normalize_url_is_idempotent_and_keeps_query_order() -> None:
    once = normalize_url("http://Ex.com/a/../b/?z=1&a=2&z=0")
    assert normalize_url(once) == once
    assert once.endswith("?z=1&a=2&z=0")


@pytest.mark.parametrize(
    "bad", ["ftp://ex.com/", "mailto:a@b.c", "http://", "/relative", "http://ex.com:99999/"]
)
def test_normalize_url_rejects_what_cannot_be_crawled(bad: str) -> None:
    with pytest.raises(InvalidURLError):
        normalize_url(bad)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/a/b/../c", "/a/c"),
        ("/../../x", "/x"),
        ("/a/b/..", "/a/"),
        ("/a/./b/.", "/a/b/"),
        ("/", "/"),
    ],
)
def test_remove_dot_segments(path: str, expected: str) -> None:
    assert remove_dot_segments(path) == expected


def test_host_key_always_names_the_port() -> None:
    assert host_key("http://Example.com/a") == "http://example.com:80"
    assert host_key("https://example.com/a") == "https://example.com:443"
    assert host_key("http://127.0.0.1:8080/") == "http://127.0.0.1:8080"
    assert host_key("http://[::1]:81/") == "http://[::1]:81"


def test_private_addresses() -> None:
    private = ["127.0.0.1", "10.1.2.3", "192.168.0.1", "172.16.5.5", "169.254.169.254"]
    private += ["::1", "fe80::1", "::ffff:10.0.0.1", "0.0.0.0", "100.64.0.1"]
    for address in private:
        assert is_private_ip(address), address
    for address in ("8.8.8.8", "1.1.1.1", "2606:4700:4700::1111"):
        assert not is_private_ip(address), address


def test_is_private_address_resolves_names() -> None:
    assert is_private_address("localhost")
    assert is_private_address("127.0.0.1")
    assert is_private_address("[::1]")
    assert not is_private_address("8.8.8.8")


def test_trap_reasons() -> None:
    assert trap_reason("http://ex.com/a/b/c") is None
    assert trap_reason("http://ex.com/" + "a" * 2000) == "url_too_long"
    assert trap_reason("http://ex.com/x" * 1, max_url_length=10) == "url_too_long"
    assert trap_reason("http://ex.com/cal/x/cal/y/cal/z") == "repeated_segment"
    assert trap_reason("http://ex.com/" + "/".join(f"s{i}" for i in range(13))) == (
        "too_many_segments"
    )
    assert trap_reason("http://ex.com/" + "/".join(f"s{i}" for i in range(12))) is None


@pytest.mark.parametrize(
    "bad",
    ["http://bad host.com/", "http://a<b.com/", "http://a%20b.com/", "http://a|b/", "http://a^b/"],
)
def test_hosts_with_forbidden_code_points_are_invalid(bad: str) -> None:
    with pytest.raises(InvalidURLError, match="forbidden character in host"):
        normalize_url(bad)


def test_percent_encoded_host_is_decoded() -> None:
    assert normalize_url("http://ex%41mple.com/") == "http://example.com/"


@pytest.mark.parametrize(
    "reference",
    [
        "https://Other.org/x",
        "https://other.org",
        "http://other.org:80/a?q",
        "/root?a=1&b",
        "//cdn.org/x.jpg",
        "rel/a.jpg",
        "../up/a.jpg",
        "./here",
        "?q=1",
        "",
        "a b/é.jpg",
        "/a/%7efoo",
        "http:relative",
        "HTTP://EX.COM/",
        "http://bad host/",
    ],
)
def test_reference_resolver_matches_urljoin(reference: str) -> None:
    base = "http://Example.com/dir/./page.html?x=1"
    resolver = ReferenceResolver(base)
    try:
        expected: str | None = normalize_url(urljoin(base, reference))
    except InvalidURLError:
        expected = None
    try:
        found: str | None = resolver.resolve(reference)
    except InvalidURLError:
        found = None
    assert found == expected


def test_session_ids_are_stripped() -> None:
    assert strip_session_ids("http://a.com/p?x=1&sid=abc&y=2") == "http://a.com/p?x=1&y=2"
    assert strip_session_ids("http://a.com/p;jsessionid=0A1B?x=1") == "http://a.com/p?x=1"
    assert strip_session_ids("http://a.com/p?PHPSESSID=9&ASPSESSIONIDQQ=1") == "http://a.com/p"
    same = "http://a.com/p?side=1&sids=2"
    assert strip_session_ids(same) is same  # near misses are left alone


def test_path_patterns_and_query_families() -> None:
    assert (
        path_pattern("http://a.com/cal/2024/11?view=1&day=3") == "http://a.com:80/cal/0/0?day&view"
    )
    assert path_pattern("http://a.com/cal/1999/2?day=9&view=2") == path_pattern(
        "http://a.com/cal/2024/11?view=1&day=3"
    )
    assert path_pattern("http://a.com/cal/x") != path_pattern("http://b.com/cal/x")
    assert query_family("http://a.com/e?day=1") == "http://a.com/e"
    assert query_family("http://a.com/e") is None
