from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp import web

from core.config import CrawlConfig, NetConfig
from core.record import Pair
from core.stats import StageStats
from crawlers.crawlstate import CrawlState
from crawlers.pages import ParsePool, ParserError, crawl, crawl_pages
from crawlers.urls import InvalidURLError
from tests.crawlers.conftest import FaultServer


def config(**overrides: Any) -> CrawlConfig:
    values: dict[str, Any] = {
        "timeout": 2.0,
        "backoff": 0.01,
        "concurrency": 8,
        "per_host_delay": 0.0,  # the test servers are ours; tests of the delay set one
        "net": NetConfig(allow_private=("127.0.0.1",)),  # the test servers live on loopback
    }
    values.update(overrides)
    return CrawlConfig(**values)


def run(seeds: list[str], **overrides: Any) -> tuple[list[Pair], StageStats]:
    stats = StageStats("crawl")
    pairs = crawl(seeds, config(**overrides), stats)
    assert stats.seen == stats.kept + sum(stats.dropped.values()), stats.to_dict()
    return pairs, stats


def test_crawls_a_site_breadth_first(fault_server: FaultServer) -> None:
    pairs, stats = run([fault_server.url("/site/0")], per_host_connections=1)
    assert stats.kept == 15 and stats.seen == 15 and not stats.dropped
    assert len(pairs) == 15 * 3 == stats.counts["candidates"] == stats.counts["images_found"]
    pages = [p for p in fault_server.log.paths if p.startswith("/site/")]
    assert pages == [f"/site/{n}" for n in range(15)]  # one connection: exact BFS order
    assert fault_server.log.hits["/robots.txt"] == 1
    first = next(p for p in pairs if p.page_url == fault_server.url("/site/4"))
    assert first.url == fault_server.url("/img/4-0.jpg")
    assert first.caption == "picture 0 of page 4"
    assert first.source == "crawl" and first.page_lang == "en" and first.status == "candidate"
    assert fault_server.log.user_agents == {CrawlConfig().user_agent}


def test_duplicate_images_are_kept(fault_server: FaultServer) -> None:
    pairs, _ = run([fault_server.url("/html"), fault_server.url("/redirect/0")])
    # /redirect/0 lands on /html, already seen: dropped, not parsed twice
    assert [p.caption for p in pairs] == ["landing"]
    pairs, _ = run([fault_server.url("/flaky/k?fail=0"), fault_server.url("/flaky/k?fail=0&x=1")])
    assert [p.url for p in pairs] == [fault_server.url("/img/k.jpg")] * 2


def test_obeys_robots(fault_server: FaultServer) -> None:
    fault_server.robots_txt = "User-agent: *\nDisallow: /site/1$\nDisallow: /private/\n"
    _, stats = run([fault_server.url("/site/0"), fault_server.url("/private/x")])
    fetched = set(fault_server.log.paths)
    assert "/site/1" not in fetched and "/private/x" not in fetched
    assert not fetched & {"/site/3", "/site/4", "/site/7", "/site/10"}  # only under /site/1
    assert {"/site/2", "/site/6", "/site/14"} <= fetched
    assert stats.dropped == {"robots_disallowed": 2}
    assert stats.kept == 8 and fault_server.log.hits["/robots.txt"] == 1


def test_robots_not_fetched_when_not_respected(fault_server: FaultServer) -> None:
    fault_server.robots_txt = "User-agent: *\nDisallow: /\n"
    _, stats = run([fault_server.url("/html")], respect_robots=False)
    assert stats.kept == 1 and fault_server.log.hits["/robots.txt"] == 0


def test_per_host_concurrency_is_capped(
    fault_server: FaultServer, second_server: FaultServer
) -> None:
    for server in (fault_server, second_server):
        server.page_delay = 0.05
    seeds = [fault_server.url("/site/0"), second_server.url("/site/0")]
    _, stats = run(seeds, concurrency=16, per_host_connections=2)
    assert stats.kept == 30
    assert fault_server.log.max_in_flight == 2 and second_server.log.max_in_flight == 2


def test_per_host_delay_from_crawl_delay(fault_server: FaultServer) -> None:
    fault_server.robots_txt = "User-agent: *\nCrawl-delay: 0.15\n"
    fault_server.site_pages = 5
    _, stats = run([fault_server.url("/site/0")], per_host_connections=4, per_host_delay=0.05)
    starts = [t for path, t in fault_server.log.starts if path.startswith("/site/")]
    assert stats.kept == 5 and len(starts) == 5
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert starts[-1] - starts[0] >= 4 * 0.15 - 0.01, gaps  # arrival jitter aside
    assert min(gaps) >= 0.1, gaps  # 0.15 asked; never the 0.05 configured


def test_host_asking_too_long_a_delay_is_skipped(fault_server: FaultServer) -> None:
    fault_server.robots_txt = "User-agent: *\nCrawl-delay: 120\n"
    _, stats = run([fault_server.url("/site/0"), fault_server.url("/site/1")])
    assert stats.dropped == {"crawl_delay_too_long": 2} and stats.kept == 0
    assert fault_server.log.paths == ["/robots.txt"]


def test_retries_then_succeeds(fault_server: FaultServer) -> None:
    pairs, stats = run([fault_server.url("/flaky/f?fail=2")], retries=2)
    assert stats.kept == 1 and stats.counts["retries"] == 2
    assert [p.caption for p in pairs] == ["f"]
    _, stats = run([fault_server.url("/flaky/g?fail=3")], retries=2)
    assert stats.dropped == {"http_503": 1}


def test_failures_are_counted_by_reason(fault_server: FaultServer) -> None:
    seeds = [
        fault_server.url(path)
        for path in (
            "/status/404",
            "/status/500",
            "/typed?type=image/jpeg",
            "/slow?seconds=3",
            "/huge?bytes=3000000",
            "/redirect/8",
            "/loop/a",
        )
    ]
    _, stats = run(seeds, timeout=0.3, retries=1, max_redirects=3, max_page_bytes=1_000_000)
    assert stats.dropped == {
        "http_404": 1,
        "http_500": 1,
        "not_html": 1,
        "timeout": 1,
        "too_large": 1,
        "too_many_redirects": 1,
        "redirect_loop": 1,
    }
    assert stats.kept == 0 and stats.counts["retries"] == 2  # 500 and the timeout


def test_gzip_page_is_parsed(fault_server: FaultServer) -> None:
    pairs, stats = run([fault_server.url("/gzip?bytes=5000")])
    assert stats.kept == 1 and [p.caption for p in pairs] == ["zipped"]


def test_private_addresses_refused_unless_allowed(fault_server: FaultServer) -> None:
    seeds = [fault_server.url("/site/0"), f"http://localhost:{fault_server.port}/html"]
    pairs, stats = run(seeds, net=NetConfig())
    assert pairs == [] and stats.dropped == {"private_address": 2}
    assert fault_server.log.paths == []


def test_calendar_trap_terminates(fault_server: FaultServer) -> None:
    start = time.monotonic()
    _, stats = run(
        [fault_server.url("/calendar/2024/1")],
        max_depth=1000,
        max_pages_per_host=40,
        max_pages=500,
        concurrency=4,
    )
    assert time.monotonic() - start < 15
    assert stats.kept == 40 and stats.dropped["max_pages_per_host"] >= 1
    _, stats = run([fault_server.url("/calendar/2024/1")], max_depth=5)
    assert stats.kept == 11  # the seed plus 5 months forward and 5 back
    assert stats.dropped["max_depth"] == 2


def test_trap_heuristics_refuse_urls(fault_server: FaultServer) -> None:
    seeds = [fault_server.url("/a/b/a/b/a/b"), fault_server.url("/html?" + "x" * 300)]
    _, stats = run(seeds, max_url_length=200)
    assert stats.dropped == {"trap": 2} and fault_server.log.paths == []


def test_page_budget(fault_server: FaultServer) -> None:
    _, stats = run([fault_server.url("/site/0")], max_pages=5, per_host_connections=1)
    assert stats.kept == 5 and fault_server.log.count("/site/") == 5
    assert stats.dropped["max_pages"] >= 1


def test_same_host_only(fault_server: FaultServer, second_server: FaultServer) -> None:
    target = second_server.url("/html")
    pairs, stats = run([fault_server.url(f"/to?url={target}")], same_host_only=True)
    # a redirect is followed (robots checked) even offsite; links are what is filtered
    assert stats.kept == 1
    assert pairs[0].page_url == target


@pytest.mark.parametrize("same_host_only", [True, False])
def test_offsite_links_are_not_followed(
    fault_server: FaultServer, second_server: FaultServer, same_host_only: bool
) -> None:
    offsite, onsite = second_server.url("/html"), fault_server.url("/html")
    seed = fault_server.url(f"/links?to={offsite}&to={onsite}")
    _, stats = run([seed], same_host_only=same_host_only)
    assert fault_server.log.hits["/html"] == 1
    assert second_server.log.hits["/html"] == (0 if same_host_only else 1)
    assert stats.counts["offsite_links"] == (1 if same_host_only else 0)


def test_invalid_seed_is_a_clear_error() -> None:
    with pytest.raises(InvalidURLError, match="invalid seed URL 'ftp://x/'"):
        crawl(["http://ok.example/", "ftp://x/"], config(), StageStats("crawl"))


class DeepPageServer(FaultServer):
    """The fault server plus `/deep`: 100k unclosed <div> around one image, served whole,
    and `/heavy`: 20k images among 200k paragraphs (2.4 MB, most of a second to parse)."""

    def app(self) -> web.Application:
        app = super().app()
        app.router.add_get("/deep", self.deep)
        app.router.add_get("/heavy", self.heavy)
        return app

    async def deep(self, request: web.Request) -> web.Response:
        body = "<html><body>" + "<div>" * 100_000 + "<img src='/img/deep.jpg' alt='deep'>"
        return web.Response(text=body, content_type="text/html")

    async def heavy(self, request: web.Request) -> web.Response:
        """?times=N makes it N times as long (and N times as slow to parse)."""
        times = int(request.query.get("times", "1"))
        images = "".join(f"<img src='/i/{i}.jpg' alt='heavy {i}'>" for i in range(20_000))
        body = f"<html><body>{images}{'<p>x</p>' * 200_000 * times}</body></html>"
        return web.Response(text=body, content_type="text/html")


@pytest.fixture
def deep_server() -> Iterator[FaultServer]:
    server = DeepPageServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_pathological_page_does_not_stall_other_fetches(deep_server: FaultServer) -> None:
    deep_server.page_delay = 0.02
    start = time.monotonic()
    pairs, stats = run([deep_server.url("/deep"), deep_server.url("/site/0")])
    assert time.monotonic() - start < 10
    assert stats.kept == 16
    captions = {p.caption for p in pairs}
    assert "deep" in captions and len(pairs) == 1 + 15 * 3


def test_fetches_keep_completing_while_a_slow_page_is_parsed(deep_server: FaultServer) -> None:
    """/heavy is fetched first and takes about a second to parse; the 15 small pages
    behind it are fetched and parsed meanwhile, so their pairs are recorded before its
    own. (Parsed on the event loop, nothing else could finish until it was done.)"""
    deep_server.page_delay = 0.02
    heavy = deep_server.url("/heavy?times=4")  # 7 MB: about 0.9 s to parse on an idle machine
    pairs, stats = run([heavy, deep_server.url("/site/0")], max_page_bytes=20_000_000)
    assert stats.kept == 16 and len(pairs) == 20_000 + 15 * 3
    assert next(p for p in deep_server.log.paths if p != "/robots.txt") == "/heavy?times=4"
    pages = [p.page_url for p in pairs]
    heavy_first = pages.index(heavy)
    finished_meanwhile = {url for url in pages[:heavy_first]}
    assert len(finished_meanwhile) >= 8, len(finished_meanwhile)


def test_declared_sizes_and_titles_reach_the_pairs(fault_server: FaultServer) -> None:
    pairs, _ = run([fault_server.url("/html")])
    assert [(p.declared_width, p.declared_height, p.title) for p in pairs] == [(None, None, None)]
    page = "<img src='/a.jpg' alt='a kite' width='64' height=48 title='Kite' data-image-title=K>"
    pairs, _ = run([fault_server.url(f"/typed?type=text/html&body={quote(page)}")])
    got = [(p.declared_width, p.declared_height, p.title, p.image_title) for p in pairs]
    assert got == [(64, 48, "Kite", "K")]


def test_polite_by_default() -> None:
    polite = CrawlConfig()
    assert polite.per_host_delay == 1.0 and polite.per_host_connections == 2
    assert polite.max_requests_per_second == 0.0  # no global cap unless asked


def test_per_host_delay_and_connections_are_enforced(
    fault_server: FaultServer, second_server: FaultServer
) -> None:
    slow, fast = fault_server, second_server
    slow.site_pages, slow.site_fanout, slow.page_delay = 10, 3, 0.45  # both connections busy
    fast.site_pages, fast.site_fanout = 4, 3
    _, stats = run(
        [slow.url("/site/0"), fast.url("/site/0")],
        concurrency=16,
        per_host_connections=2,
        per_host_delay=0.2,
    )
    assert stats.kept == 14 and not stats.dropped
    starts = {
        server: [t for path, t in server.log.starts if path.startswith("/site/")]
        for server in (slow, fast)
    }
    assert len(starts[slow]) == 10 and len(starts[fast]) == 4
    for times in starts.values():
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert min(gaps) >= 0.19, gaps  # 0.2 asked, arrival jitter aside
    # a third request would be due by the delay before either of the two in flight ends
    assert slow.log.max_in_flight == 2 and fast.log.max_in_flight <= 2
    # the fast host is not held back behind the slow one's spacing
    assert starts[fast][-1] + 0.5 < starts[slow][-1], (starts[fast], starts[slow])


def test_global_rate_spaces_all_hosts(
    fault_server: FaultServer, second_server: FaultServer
) -> None:
    for server in (fault_server, second_server):
        server.site_pages, server.site_fanout = 4, 3
    seeds = [fault_server.url("/site/0"), second_server.url("/site/0")]
    _, stats = run(seeds, concurrency=16, per_host_connections=2, max_requests_per_second=10)
    assert stats.kept == 8
    starts = sorted(
        t for server in (fault_server, second_server)
        for path, t in server.log.starts if path.startswith("/site/")
    )  # fmt: skip
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert len(starts) == 8 and min(gaps) >= 0.08, gaps  # 0.1 asked, arrival jitter aside


def test_distinct_urls_per_path_pattern_are_capped(fault_server: FaultServer) -> None:
    """Generated pages (/items/N, endless) stop at the pattern's cap, not at max_depth."""
    _, stats = run([fault_server.url("/items/0")], max_depth=1000, max_urls_per_pattern=20)
    assert stats.kept == 20 and fault_server.log.count("/items/") == 20
    assert stats.dropped == {"trap_path_pattern": stats.seen - 20}
    _, stats = run([fault_server.url("/items/0")], max_depth=1000, max_urls_per_pattern=7)
    assert stats.kept == 7  # the cap, not the site, decides


def test_query_variants_of_one_path_are_capped(fault_server: FaultServer) -> None:
    """A calendar in the query string (?day=N, each with a list view) is endless in both
    directions; a path's distinct queries are capped."""
    _, stats = run(
        [fault_server.url("/events?day=0")],
        max_depth=1000,
        max_query_variants=12,
        max_urls_per_pattern=1000,
    )
    assert stats.kept == 12 and fault_server.log.count("/events") == 12
    assert set(stats.dropped) == {"trap_query_variants"}


def test_session_ids_do_not_make_pages_new(fault_server: FaultServer) -> None:
    pairs, stats = run([fault_server.url("/session?page=1&sid=seed")], max_depth=1000)
    pages = sorted(p for p in fault_server.log.paths if p.startswith("/session"))
    assert stats.kept == 3 and pages == [
        "/session?page=1", "/session?page=2", "/session?page=3",
    ]  # fmt: skip
    assert sorted(p.caption for p in pairs) == ["page 1", "page 2", "page 3"]
    assert stats.counts["session_ids_removed"] == 1 + 3 * 2 + 2  # seed, 2 per page, 2 nexts
    assert stats.counts["duplicate_links"] == 3 * 2


def parser_processes() -> list[int]:
    """The page parser workers of this process's crawl: children of its forkserver."""

    def parent(pid: int) -> int | None:
        try:
            return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            return None

    pids = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]
    servers = {
        pid
        for pid in pids
        if parent(pid) == os.getpid() and b"forkserver" in Path(f"/proc/{pid}/cmdline").read_bytes()
    }
    return [pid for pid in pids if parent(pid) in servers]


class ParserKillingServer(FaultServer):
    """The fault server plus `/kill/N`: kills every parser process of the crawl, then
    serves a page with one image linking to /kill/N+1 (up to ?last=)."""

    def __init__(self) -> None:
        super().__init__()
        self.killed: list[int] = []

    def app(self) -> web.Application:
        app = super().app()
        app.router.add_get("/kill/{n}", self.kill)
        return app

    async def kill(self, request: web.Request) -> web.Response:
        n, last = int(request.match_info["n"]), int(request.query.get("last", "0"))
        for pid in parser_processes():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                self.killed.append(pid)
        await asyncio.sleep(0.2)  # the pool notices before the page arrives
        more = f"<a href='/kill/{n + 1}?last={last}'>next</a>" if n < last else ""
        body = f"<html><img src='/img/k{n}.jpg' alt='survivor {n}'>{more}</html>"
        return web.Response(text=body, content_type="text/html")


@pytest.fixture
def killing_server() -> Iterator[ParserKillingServer]:
    server = ParserKillingServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_a_dead_parser_process_is_replaced(killing_server: ParserKillingServer) -> None:
    killing_server.page_delay = 0.01
    seeds = [killing_server.url("/site/0"), killing_server.url("/kill/0?last=1")]
    pairs, stats = run(seeds, per_host_connections=2)
    assert killing_server.killed, "no parser process was running to be killed"
    assert stats.kept == 15 + 2 and not stats.dropped  # every page parsed, none lost
    assert {"survivor 0", "survivor 1"} <= {p.caption for p in pairs}
    assert len(pairs) == 15 * 3 + 2
    assert stats.counts["parser_restarts"] >= 1


def test_parsers_that_keep_dying_fail_the_crawl_cleanly(
    killing_server: ParserKillingServer,
) -> None:
    async def go() -> None:
        with ParsePool(max_restarts=2) as parser:
            await crawl_pages(
                [killing_server.url("/kill/0?last=50")],
                config(per_host_connections=1),
                StageStats("crawl"),
                CrawlState(":memory:"),
                parser=parser,
            )

    start = time.monotonic()
    with pytest.raises(ParserError, match="died 3 times"):
        asyncio.run(go())
    assert time.monotonic() - start < 30  # a safety net: it fails, it does not hang
    assert killing_server.log.count("/kill/") <= 5


def test_a_page_that_parses_too_long_is_given_up(deep_server: FaultServer) -> None:
    async def go(stats: StageStats) -> CrawlState:
        state = CrawlState(":memory:")
        # /heavy?times=40 (65 MB) takes about 7 s to parse on an idle machine: far past 1 s
        with ParsePool(timeout=1.0) as parser:
            seeds = [deep_server.url("/heavy?times=40"), deep_server.url("/site/0")]
            limits = config(max_page_bytes=100_000_000)
            await crawl_pages(seeds, limits, stats, state, parser=parser)
        return state

    stats = StageStats("crawl")
    state = asyncio.run(go(stats))
    assert stats.dropped == {"parse_timeout": 1} and stats.kept == 15
    assert state.pair_count() == 15 * 3  # the others parsed on, in the new pool
    assert "parser_restarts" not in stats.counts  # our own kill is not a death
