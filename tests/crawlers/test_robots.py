from __future__ import annotations

import asyncio

import pytest

from core.config import NetConfig
from crawlers.fetch import FetchOptions, open_session
from crawlers.robots import RobotsCache, policy_from_response, product_token
from tests.crawlers.conftest import FaultServer

UA = "OpenWITBot/0.1 (+https://example.org/bot)"
LOOPBACK = NetConfig(allow_private=("127.0.0.1",))  # the test servers, on any port
OPTIONS = FetchOptions(user_agent=UA, timeout=2.0, net=LOOPBACK)


def ask(server: FaultServer, urls: list[str]) -> tuple[list[bool], float | None, int]:
    """allowed() for each URL (concurrently), the host's crawl delay, and fetch count."""

    async def go() -> tuple[list[bool], float | None, int]:
        async with open_session(UA, 8, 4, LOOPBACK) as session:
            cache = RobotsCache(session, OPTIONS)
            answers = await asyncio.gather(*(cache.allowed(u) for u in urls))
            delay = await cache.crawl_delay(f"http://127.0.0.1:{server.port}")
            return list(answers), delay, cache.fetches

    return asyncio.run(go())


def test_disallow_and_crawl_delay_fetched_once(fault_server: FaultServer) -> None:
    fault_server.robots_txt = (
        "User-agent: otherbot\nDisallow: /\n\n"
        "User-agent: OpenWITBot\nDisallow: /private/\nAllow: /private/ok\nCrawl-delay: 1.5\n"
    )
    urls = [fault_server.url(p) for p in ("/html", "/private/x", "/private/ok", "/site/1")] * 3
    answers, delay, fetches = ask(fault_server, urls)
    assert answers == [True, False, True, True] * 3
    assert delay == 1.5
    assert fetches == 1 and fault_server.log.hits["/robots.txt"] == 1


@pytest.mark.parametrize(
    ("status", "allowed"),
    [(404, True), (410, True), (401, True), (403, True), (429, False), (500, False), (503, False)],
)
def test_status_semantics(fault_server: FaultServer, status: int, allowed: bool) -> None:
    fault_server.robots_txt = "User-agent: *\nDisallow: /\n"  # ignored unless 2xx
    fault_server.robots_status = status
    answers, delay, _ = ask(fault_server, [fault_server.url("/html")])
    assert answers == [allowed] and delay is None


def test_unreachable_host_is_disallowed() -> None:
    answers_policy = policy_from_response(None, "connection_error", b"")
    assert not answers_policy.allowed("http://h/x", UA)
    assert not policy_from_response(None, "timeout", b"").allowed("http://h/x", UA)
    assert policy_from_response(None, "too_many_redirects", b"").allowed("http://h/x", UA)
    assert policy_from_response(None, "private_address", b"").allowed("http://h/x", UA)


def test_robots_redirect_is_followed(fault_server: FaultServer, second_server: FaultServer) -> None:
    fault_server.robots_redirect = second_server.url("/robots.txt")
    second_server.robots_txt = "User-agent: *\nDisallow: /html\n"
    answers, _, _ = ask(fault_server, [fault_server.url("/html"), fault_server.url("/site/1")])
    assert answers == [False, True]
    assert second_server.log.hits["/robots.txt"] == 1


def test_robots_fetch_ends_at_the_page_deadline(fault_server: FaultServer) -> None:
    """A robots.txt that trickles is cut at the crawl's deadline, not at a default of its
    own: the per-attempt timeout here is longer, so only the deadline can end it first."""
    fault_server.robots_redirect = fault_server.url("/tarpit?every=0.05")
    options = FetchOptions(user_agent=UA, timeout=8.0, deadline=0.5, net=LOOPBACK)

    async def go() -> tuple[bool, str]:
        async with open_session(UA, 8, 4, LOOPBACK) as session:
            cache = RobotsCache(session, options)
            allowed = await cache.allowed(fault_server.url("/html"))
            policy = cache.cached(f"http://127.0.0.1:{fault_server.port}")
            assert policy is not None
            return allowed, policy.reason

    assert asyncio.run(go()) == (False, "deadline_exceeded")


def test_policy_from_a_parsed_body() -> None:
    policy = policy_from_response(200, None, b"User-agent: *\nDisallow: /a\nCrawl-delay: 2\n")
    assert not policy.allowed("http://h/a/b", UA) and policy.allowed("http://h/b", UA)
    assert policy.crawl_delay(UA) == 2.0 and policy.reason == "parsed"


def test_a_byte_order_mark_does_not_hide_the_first_group() -> None:
    policy = policy_from_response(200, None, b"\xef\xbb\xbfUser-agent: *\nDisallow: /a\n")
    assert not policy.allowed("http://h/a", UA) and policy.allowed("http://h/b", UA)


def test_groups_match_the_product_token_only() -> None:
    assert product_token(UA) == "OpenWITBot"
    assert product_token("  my_bot-2/1.0") == "my_bot-"
    robots = (
        b"User-agent: https\nDisallow: /\n\nUser-agent: example\nDisallow: /\n\n"
        b"User-agent: *\nDisallow: /private\n"
    )
    policy = policy_from_response(200, None, robots)
    assert policy.allowed("http://h/page", UA)  # the `https` and `example` groups are not ours
    assert not policy.allowed("http://h/private", UA)
    ours = policy_from_response(
        200, None, b"User-agent: openwitbot\nDisallow: /x\nCrawl-delay: 3\n"
    )
    assert not ours.allowed("http://h/x", UA) and ours.crawl_delay(UA) == 3.0


def test_the_cache_asks_with_the_product_token(fault_server: FaultServer) -> None:
    fault_server.robots_txt = "User-agent: example\nDisallow: /\n\nUser-agent: *\nDisallow: /a\n"
    answers, _, _ = ask(fault_server, [fault_server.url("/html"), fault_server.url("/a")])
    assert answers == [True, False]
    assert fault_server.log.user_agents == {UA}  # the whole header is still sent
