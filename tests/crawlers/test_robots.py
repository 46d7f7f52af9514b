from __future__ import annotations

import asyncio

import pytest

from crawlers.fetch import FetchOptions, open_session
from crawlers.robots import RobotsCache, policy_from_response
from tests.crawlers.conftest import FaultServer

UA = "OpenWITBot/0.1 (+https://example.org/bot)"
OPTIONS = FetchOptions(user_agent=UA, timeout=2.0, allow_private_addresses=True)


def ask(server: FaultServer, urls: list[str]) -> tuple[list[bool], float | None, int]:
    """allowed() for each URL (concurrently), the host's crawl delay, and fetch count."""

    async def go() -> tuple[list[bool], float | None, int]:
        async with open_session(UA, 8, 4, True) as session:
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


def test_policy_from_a_parsed_body() -> None:
    policy = policy_from_response(200, None, b"User-agent: *\nDisallow: /a\nCrawl-delay: 2\n")
    assert not policy.allowed("http://h/a/b", UA) and policy.allowed("http://h/b", UA)
    assert policy.crawl_delay(UA) == 2.0 and policy.reason == "parsed"
