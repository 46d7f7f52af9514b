from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

from core.config import NetConfig
from crawlers.fetch import (
    FetchOptions,
    FetchResult,
    fetch,
    open_session,
    parse_retry_after,
    retry_delay,
)
from tests.crawlers.conftest import FaultServer

LOOPBACK = NetConfig(allow_private=("127.0.0.1",))  # the test servers, on any port
OPTIONS = FetchOptions(timeout=2.0, retries=2, backoff=0.01, net=LOOPBACK)


def fetch_url(url: str, options: FetchOptions = OPTIONS, **kwargs: Any) -> FetchResult:
    async def go() -> FetchResult:
        async with open_session("TestBot/1.0", 8, 4, options.net) as session:
            return await fetch(session, url, options, **kwargs)

    return asyncio.run(go())


def test_retry_decision() -> None:
    opts = FetchOptions(retries=2, backoff=0.5, max_retry_after=3.0)
    assert retry_delay(0, 503, None, None, opts) == 0.5
    assert retry_delay(1, 500, None, None, opts) == 1.0
    assert retry_delay(2, 503, None, None, opts) is None  # out of retries
    assert retry_delay(0, 408, None, None, opts) == 0.5
    assert retry_delay(0, 429, None, 2.0, opts) == 2.0  # Retry-After honoured
    assert retry_delay(0, 429, None, 60.0, opts) == 3.0  # ... up to the cap
    assert retry_delay(0, 404, None, None, opts) is None
    assert retry_delay(0, 200, None, None, opts) is None
    assert retry_delay(0, None, "timeout", None, opts) == 0.5
    assert retry_delay(0, None, "connection_error", None, opts) == 0.5
    assert retry_delay(0, None, "too_large", None, opts) is None
    assert retry_delay(0, None, "private_address", None, opts) is None


def test_parse_retry_after() -> None:
    assert parse_retry_after("5") == 5.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    http_date = "Wed, 21 Oct 2015 07:28:10 GMT"
    assert parse_retry_after(http_date, now=1445412480.0) == 10.0


def test_plain_page(fault_server: FaultServer) -> None:
    result = fetch_url(fault_server.url("/html"))
    assert result.ok and result.status == 200 and b"landing" in result.body
    assert result.content_type == "text/html"
    assert result.failure() is None and result.retries == 0
    assert fault_server.log.user_agents == {"TestBot/1.0"}


def test_http_errors_are_data(fault_server: FaultServer) -> None:
    result = fetch_url(fault_server.url("/status/404"))
    assert result.status == 404 and result.failure() == "http_404" and result.retries == 0
    result = fetch_url(fault_server.url("/status/500"))
    assert result.failure() == "http_500" and result.retries == 2
    assert fault_server.log.hits["/status/500"] == 3


def test_503_then_200_is_retried(fault_server: FaultServer) -> None:
    result = fetch_url(fault_server.url("/flaky/a?fail=2"))
    assert result.ok and result.retries == 2
    assert fault_server.log.hits["/flaky/a"] == 3


def test_retry_after_is_honoured(fault_server: FaultServer) -> None:
    start = time.monotonic()
    result = fetch_url(fault_server.url("/flaky/b?fail=1&code=429&after=1"))
    assert result.ok and result.retries == 1
    assert time.monotonic() - start >= 0.95


def test_timeout_then_give_up(fault_server: FaultServer) -> None:
    options = FetchOptions(timeout=0.2, retries=1, backoff=0.01, net=LOOPBACK)
    result = fetch_url(fault_server.url("/slow?seconds=2"), options)
    assert result.failure() == "timeout" and result.retries == 1
    assert fault_server.log.hits["/slow"] == 2


def test_connection_refused() -> None:
    with socket.socket() as probe:  # a port nobody listens on once closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    options = FetchOptions(retries=1, backoff=0.01, net=LOOPBACK)
    result = fetch_url(f"http://127.0.0.1:{port}/html", options)
    assert result.failure() == "connection_error" and result.retries == 1
    assert result.status is None and result.error_message


def test_redirect_chain_within_and_over_the_limit(fault_server: FaultServer) -> None:
    result = fetch_url(fault_server.url("/redirect/3"))
    assert result.ok and result.final_url == fault_server.url("/html")
    assert len(result.redirects) == 4
    options = FetchOptions(max_redirects=2, net=LOOPBACK)
    result = fetch_url(fault_server.url("/redirect/5"), options)
    assert result.failure() == "too_many_redirects" and not result.body
    assert fault_server.log.count("/redirect/") == 4 + 3  # never more than max hops + 1


def test_redirect_loop_is_detected(fault_server: FaultServer) -> None:
    result = fetch_url(fault_server.url("/loop/a"))
    assert result.failure() == "redirect_loop"
    assert fault_server.log.hits["/loop/a"] == 1 and fault_server.log.hits["/loop/b"] == 1


def test_every_hop_is_checked(fault_server: FaultServer) -> None:
    asked: list[str] = []

    async def refuse_private(url: str) -> str | None:
        asked.append(url)
        return "robots_disallowed" if "/private/" in url else None

    check: Callable[[str], Awaitable[str | None]] = refuse_private
    target = fault_server.url("/private/x")
    result = fetch_url(fault_server.url(f"/to?url={target}"), hop_check=check)
    assert result.failure() == "robots_disallowed" and asked == [target]
    assert fault_server.log.hits["/private/x"] == 0


def test_body_cap_while_streaming(fault_server: FaultServer) -> None:
    options = FetchOptions(max_bytes=100_000, net=LOOPBACK)
    result = fetch_url(fault_server.url("/huge?bytes=5000000"), options)
    assert result.failure() == "too_large" and result.body == b"" and result.retries == 0
    declared = fetch_url(fault_server.url("/huge?bytes=5000000&length=1"), options)
    assert declared.failure() == "too_large"
    small = fetch_url(fault_server.url("/huge?bytes=99999"), options)
    assert small.ok and len(small.body) == 99_999
    truncating = FetchOptions(max_bytes=1000, truncate=True, net=LOOPBACK)
    cut = fetch_url(fault_server.url("/huge?bytes=50000"), truncating)
    assert cut.ok and cut.truncated and len(cut.body) == 1000


def test_gzip_body_is_decompressed_and_capped_on_decompressed_size(
    fault_server: FaultServer,
) -> None:
    result = fetch_url(fault_server.url("/gzip?bytes=1000"))
    assert result.ok and b"zipped" in result.body and len(result.body) > 1000
    options = FetchOptions(max_bytes=200_000, net=LOOPBACK)
    bomb = fetch_url(fault_server.url("/gzip?bytes=20000000"), options)  # ~20 KB on the wire
    assert bomb.failure() == "too_large"


def test_private_addresses_refused_unless_allowed(fault_server: FaultServer) -> None:
    refused = FetchOptions()
    result = fetch_url(fault_server.url("/html"), refused)
    assert result.failure() == "private_address" and result.retries == 0
    by_name = fetch_url(f"http://localhost:{fault_server.port}/html", refused)
    assert by_name.failure() == "private_address"
    assert fault_server.log.paths == []
    assert fetch_url(fault_server.url("/html")).ok


def test_a_tarpit_ends_at_the_deadline(fault_server: FaultServer) -> None:
    """Bytes keep coming, so no per-read timeout fires; the per-attempt timeout alone
    would retry it twice more. The deadline ends the whole fetch."""
    options = FetchOptions(timeout=0.5, deadline=1.25, retries=10, backoff=0.01, net=LOOPBACK)
    start = time.monotonic()
    result = fetch_url(fault_server.url("/tarpit"), options)
    elapsed = time.monotonic() - start
    assert result.error == "deadline_exceeded" and result.failure() == "deadline_exceeded"
    assert result.body == b"" and result.status is None
    # attempts end at 0.5 s and 1 s (timeouts, retried); the third is cut at 1.25 s
    assert result.retries >= 1 and fault_server.log.hits["/tarpit"] == result.retries + 1
    assert 1.2 <= elapsed < 5.0, elapsed  # a safety net, not a speed claim


def test_no_retry_is_started_that_would_end_past_the_deadline(fault_server: FaultServer) -> None:
    options = FetchOptions(timeout=2.0, deadline=0.5, retries=3, backoff=1.0, net=LOOPBACK)
    result = fetch_url(fault_server.url("/status/503"), options)
    assert result.failure() == "http_503" and result.retries == 0  # the 1 s backoff would not fit
    assert fault_server.log.hits["/status/503"] == 1


def test_the_deadline_covers_redirect_hops(fault_server: FaultServer) -> None:
    target = fault_server.url("/slow?seconds=0.4")
    options = FetchOptions(timeout=2.0, deadline=0.6, retries=0, net=LOOPBACK)
    assert fetch_url(fault_server.url(f"/to?url={quote(target)}"), options).ok  # 0.4 s fits
    chain = fault_server.url("/to?url=" + quote(fault_server.url(f"/to?url={quote(target)}")))
    result = fetch_url(chain, FetchOptions(timeout=2.0, deadline=0.3, retries=0, net=LOOPBACK))
    assert result.error == "deadline_exceeded" and result.final_url == target
