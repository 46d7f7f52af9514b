from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest

from core.config import NetConfig, ShardsConfig
from core.record import Pair
from core.stats import StageStats
from crawlers.images import content_type_refusal, fetch_images, opt_out_directive
from tests.crawlers.conftest import FaultServer

UA_TOKEN = "openwitbot"
LOOPBACK = NetConfig(allow_private=("127.0.0.1",))  # the test servers, on any port


def config(**overrides: Any) -> ShardsConfig:
    values: dict[str, Any] = {"timeout": 2.0, "net": LOOPBACK}
    values.update(overrides)
    return ShardsConfig(**values)


def download(
    pairs: Iterator[Pair] | list[Pair], stats: StageStats | None = None, **overrides: Any
) -> list[tuple[Pair, bytes | None]]:
    async def go() -> list[tuple[Pair, bytes | None]]:
        results = []
        async for item in fetch_images(pairs, config(**overrides), stats or StageStats("download")):
            results.append(item)
        return results

    return asyncio.run(go())


def pair(url: str, caption: str = "a photo") -> Pair:
    return Pair(url=url, caption=caption, page_url="http://example.com/", source="crawl")


def test_success_sets_fetch_fields(fault_server: FaultServer) -> None:
    stats = StageStats("download")
    ((out, body),) = download([pair(fault_server.url("/img/a.jpg"))], stats)
    assert body == fault_server.jpeg
    assert out.status == "success" and out.http_status == 200 and out.error_message is None
    assert out.content_type == "image/jpeg" and out.image_bytes == len(fault_server.jpeg)
    assert out.caption == "a photo" and out.url == fault_server.url("/img/a.jpg")
    assert stats.seen == 1 and stats.kept == 1


def test_opt_out_parsing() -> None:
    assert opt_out_directive(["noai"], UA_TOKEN) == "noai"
    assert opt_out_directive(["NoImageAI"], UA_TOKEN) == "noimageai"
    assert opt_out_directive(["nofollow, NOINDEX"], UA_TOKEN) == "noindex"
    assert opt_out_directive(["nosnippet noimageindex"], UA_TOKEN) == "noimageindex"
    assert opt_out_directive(["OpenWITBot: noai"], UA_TOKEN) == "noai"
    assert opt_out_directive(["googlebot: noindex"], UA_TOKEN) is None  # someone else's
    assert opt_out_directive(["googlebot: noindex", "noimageai"], UA_TOKEN) == "noimageai"
    assert opt_out_directive(["nofollow", "noarchive"], UA_TOKEN) is None
    assert opt_out_directive(["unavailable_after: 25 Jun 2010 15:00:00 PST"], UA_TOKEN) is None
    assert opt_out_directive([], UA_TOKEN) is None
    # Directives with a value are not user-agent prefixes.
    assert opt_out_directive(["max-image-preview:large, noai"], UA_TOKEN) == "noai"
    assert opt_out_directive(["max-video-preview: -1, noimageai"], UA_TOKEN) == "noimageai"
    assert opt_out_directive(["max-snippet: 20 noindex"], UA_TOKEN) == "noindex"


@pytest.mark.parametrize(
    ("header", "opted_out"),
    [
        ("noai", True),
        ("NoImageAI", True),
        ("noindex, nofollow", True),
        ("nosnippet noimageindex", True),
        ("openwitbot: noai", True),
        ("otherbot: noai", False),
        ("nofollow", False),
    ],
)
def test_x_robots_tag_variants(fault_server: FaultServer, header: str, opted_out: bool) -> None:
    url = fault_server.url(f"/img/x.jpg?xrobots={quote(header)}")
    ((out, body),) = download([pair(url)])
    assert (out.status == "opted_out") is opted_out
    assert (body is None) is opted_out
    if opted_out:
        assert "X-Robots-Tag" in (out.error_message or "") and out.http_status == 200
    ((kept, body),) = download([pair(url)], respect_opt_out=False)
    assert kept.status == "success" and body == fault_server.jpeg


def test_several_x_robots_tag_headers(fault_server: FaultServer) -> None:
    url = fault_server.url("/img/x.jpg?xrobots=otherbot%3A+noindex&xrobots=noimageai")
    ((out, _),) = download([pair(url)])
    assert out.status == "opted_out" and out.error_message.endswith("noimageai")  # type: ignore[union-attr]


def test_content_types() -> None:
    assert content_type_refusal("image/webp") is None
    assert content_type_refusal("application/octet-stream") is None
    assert content_type_refusal(None) is None
    assert content_type_refusal("text/html") == "content type text/html is not an image"
    assert content_type_refusal("application/json") is not None


def test_wrong_content_type_fails_naming_it(fault_server: FaultServer) -> None:
    urls = {
        "html": fault_server.url("/typed?type=text/html;+charset=utf-8&body=<html>"),
        "json": fault_server.url("/typed?type=application/json&body={}"),
        "binary": fault_server.url("/typed?type=application/octet-stream"),
    }
    results = {
        out.caption: (out, body) for out, body in download([pair(u, k) for k, u in urls.items()])
    }
    assert results["html"][0].status == "failed_to_download"
    assert results["html"][0].error_message == "content type text/html is not an image"
    assert results["json"][0].error_message == "content type application/json is not an image"
    assert results["binary"][0].status == "success" and results["binary"][1] == fault_server.jpeg


def test_failures_are_rows(fault_server: FaultServer) -> None:
    stats = StageStats("download")
    inputs = [
        pair(fault_server.url("/status/404"), "missing"),
        pair(fault_server.url("/flaky/i?fail=1&image=1"), "flaky"),
        pair(fault_server.url("/huge?bytes=300000"), "huge"),
        pair(fault_server.url("/slow?seconds=3"), "slow"),
        pair("not a url", "bad"),
    ]
    outputs = download(inputs, stats, max_image_bytes=100_000, timeout=0.3, retries=1)
    results = {out.caption: out for out, _ in outputs}
    assert (
        results["missing"].status == "failed_to_download" and results["missing"].http_status == 404
    )
    assert results["missing"].error_message == "http 404"
    assert results["flaky"].status == "success"  # 503 then 200
    assert results["huge"].error_message and "100000" in results["huge"].error_message
    assert results["slow"].error_message == "timeout after 0.3s"
    assert results["bad"].status == "failed_to_download"
    assert stats.dropped == {"http_404": 1, "too_large": 1, "timeout": 1, "invalid_url": 1}
    assert stats.kept == 1 and stats.counts["retries"] == 2  # the 503 and the timeout


def test_private_addresses_refused_unless_allowed(fault_server: FaultServer) -> None:
    ((out, body),) = download([pair(fault_server.url("/img/a.jpg"))], net=NetConfig())
    assert out.status == "failed_to_download" and body is None
    assert "private address" in (out.error_message or "")
    assert fault_server.log.paths == []


def test_dropped_pairs_pass_through_untouched(fault_server: FaultServer) -> None:
    dropped = pair(fault_server.url("/img/a.jpg")).dropped("text:too_short")
    ((out, body),) = download([dropped])
    assert out == dropped and body is None and fault_server.log.paths == []


def test_every_pair_once_within_bounded_window_and_host_caps(
    fault_server: FaultServer, second_server: FaultServer
) -> None:
    pulled = 0
    pulled_at_first_result: list[int] = []

    def lazy_pairs() -> Iterator[Pair]:
        nonlocal pulled
        for i in range(40):
            server = fault_server if i % 2 else second_server
            pulled += 1
            yield pair(server.url(f"/img/{i}.jpg?delay=0.03"), f"p{i}")

    async def go() -> list[str]:
        captions = []
        limits = config(concurrency=5, per_host_connections=2)
        stream = fetch_images(lazy_pairs(), limits, StageStats("download"), window=6)
        async for out, _ in stream:
            if not pulled_at_first_result:
                pulled_at_first_result.append(pulled)
            captions.append(out.caption)
        return captions

    captions = asyncio.run(go())
    assert sorted(captions) == sorted(f"p{i}" for i in range(40))
    assert pulled_at_first_result[0] <= 6
    assert fault_server.log.max_in_flight == 2 and second_server.log.max_in_flight == 2


@pytest.mark.slow
def test_throughput_on_loopback(fault_server: FaultServer) -> None:
    """2,000 small JPEGs from a loopback server (its own thread); prints images/s."""
    n = 2000
    pairs = (pair(fault_server.url(f"/img/{i}.jpg"), f"p{i}") for i in range(n))
    start = time.perf_counter()
    results = download(pairs, concurrency=64, per_host_connections=64)
    seconds = time.perf_counter() - start
    assert len(results) == n and all(out.status == "success" for out, _ in results)
    print(f"\n{n} images in {seconds:.2f}s: {n / seconds:.0f} images/s")
    assert n / seconds > 100
