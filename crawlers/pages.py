"""The polite page crawler: seeds in, one candidate `Pair` per `<img>` occurrence out.

What is true as a crawl runs:
- every distinct normalised URL that reaches the crawler is counted once in `stats.seen`
  and ends either kept (fetched, HTML, parsed) or dropped with one reason, so
  `seen == kept + sum(dropped)`; URLs still queued when the page budget runs out are
  dropped as `max_pages`;
- a page is fetched only if robots.txt allows it (each redirect hop too), its host is
  not skipped for a Crawl-delay over `max_crawl_delay`, and it is within the depth,
  per-host and total page caps;
- the crawl ends: pages are capped in total and per host, depth is capped, and trap-like
  URLs (too long, too deep, a repeated path segment) are never queued;
- pages are parsed in a small pool of processes (`PARSE_WORKERS`), never on the event
  loop, so fetches in flight keep going while a large or pathological page is parsed.

Drop reasons: robots_disallowed, http_<status>, not_html, redirect_loop,
too_many_redirects, timeout, connection_error, too_large, trap, max_depth,
max_pages_per_host, max_pages, crawl_delay_too_long, private_address, invalid_url,
redirect_duplicate. Counts: images_found, candidates, links_found, retries,
duplicate_links, offsite_links, images_opted_out, robots_fetches.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import multiprocessing
import time

import aiohttp

from crawlers.fetch import FetchOptions, FetchResult, fetch, session_for
from crawlers.frontier import DROP_CRAWL_DELAY, FrontierEntry, HostFrontier
from crawlers.html import IMAGE_OPT_OUT, PageContent, extract, is_html
from crawlers.robots import RobotsCache
from crawlers.urls import InvalidURLError, host_key, normalize_url, trap_reason
from pipeline.config import CrawlConfig
from pipeline.record import Pair
from pipeline.stats import StageStats

DROP_ROBOTS = "robots_disallowed"
DROP_NOT_HTML = "not_html"
DROP_TRAP = "trap"
DROP_MAX_PAGES = "max_pages"
DROP_REDIRECT_DUPLICATE = "redirect_duplicate"
PARSE_WORKERS = 2  # processes parsing pages for one crawl


def parse_pool(workers: int = PARSE_WORKERS) -> concurrent.futures.ProcessPoolExecutor:
    """Processes (from the forkserver) that run `extract` for the crawl's event loop."""
    context = multiprocessing.get_context("forkserver")
    return concurrent.futures.ProcessPoolExecutor(workers, mp_context=context)


def normalize_seeds(seeds: list[str]) -> list[str]:
    """Seeds normalised, blank lines and `#` comments skipped; a bad seed is an error."""
    result = []
    for seed in seeds:
        seed = seed.strip()
        if not seed or seed.startswith("#"):
            continue
        try:
            result.append(normalize_url(seed))
        except InvalidURLError as exc:
            raise InvalidURLError(f"invalid seed URL {seed!r}: {exc}") from None
    return result


class PageCrawler:
    """One crawl: a frontier, a robots cache, a session, and the pairs found so far."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        config: CrawlConfig,
        stats: StageStats,
        parser: concurrent.futures.Executor,
    ) -> None:
        self.session = session
        self.parser = parser
        self.config = config
        self.stats = stats
        self.options = FetchOptions.for_crawl(config)
        self.robots = RobotsCache(session, self.options)
        self.frontier = HostFrontier(
            max_depth=config.max_depth,
            max_pages_per_host=config.max_pages_per_host,
            per_host_connections=config.per_host_connections,
            per_host_delay=config.per_host_delay,
            max_crawl_delay=config.max_crawl_delay,
            max_requests_per_second=config.max_requests_per_second,
        )
        self.pairs: list[Pair] = []
        self.attempted = 0  # page fetches started, against config.max_pages
        self.seed_hosts: set[str] = set()

    async def run(self, seeds: list[str]) -> list[Pair]:
        """Crawl from `seeds` (already normalised) until the frontier is exhausted."""
        self.seed_hosts = {host_key(seed) for seed in seeds}
        for seed in seeds:
            self.enqueue(seed, depth=0)
        async with asyncio.TaskGroup() as group:
            for _ in range(self.config.concurrency):
                group.create_task(self.work())
        self.drop_all(DROP_MAX_PAGES, len(self.frontier.close()))
        self.stats.count("robots_fetches", self.robots.fetches)
        return self.pairs

    def drop_all(self, reason: str, n: int) -> None:
        if n:
            self.stats.drop(reason, n)

    # ------------------------------------------------------------ queueing

    def enqueue(self, url: str, depth: int) -> None:
        """Offer a normalised URL to the frontier, counting it once as seen."""
        if not self.frontier.mark_seen(url):
            self.stats.count("duplicate_links")
            return
        if self.config.same_host_only and host_key(url) not in self.seed_hosts:
            self.stats.count("offsite_links")
            return
        self.stats.seen += 1
        reason = self.refusal(url, depth)
        if reason is not None:
            self.stats.drop(reason)

    def refusal(self, url: str, depth: int) -> str | None:
        """Queue `url` unless a cheap check refuses it; returns the refusal reason."""
        if trap_reason(url, self.config.max_url_length) is not None:
            return DROP_TRAP
        if self.config.respect_robots and self.robots.cached_allowed(url) is False:
            return DROP_ROBOTS
        if self.attempted >= self.config.max_pages:
            return DROP_MAX_PAGES
        return self.frontier.add(url, depth)

    # ------------------------------------------------------------ visiting

    async def work(self) -> None:
        """Take entries from the frontier and visit them until it is exhausted."""
        while (entry := await self.frontier.next_entry()) is not None:
            try:
                reason = await self.visit(entry)
            finally:
                self.frontier.release(entry)
            if reason is None:
                self.stats.kept += 1
            else:
                self.stats.drop(reason)

    async def visit(self, entry: FrontierEntry) -> str | None:
        """Fetch and parse one page; returns why it was dropped, or None if kept."""
        reason = await self.admit(entry.url)
        if reason is not None:
            return reason
        if self.attempted >= self.config.max_pages:
            self.drop_all(DROP_MAX_PAGES, len(self.frontier.close()))
            return DROP_MAX_PAGES
        self.attempted += 1
        result = await fetch(self.session, entry.url, self.options, self.hop_check)
        self.stats.count("retries", result.retries)
        reason = result.failure() or self.unusable(result, entry)
        if reason is None:
            self.collect(await self.parse(result), result.final_url, entry.depth)
        return reason

    async def parse(self, result: FetchResult) -> PageContent:
        """`extract` of a fetched page, run in the parser pool."""
        loop = asyncio.get_running_loop()
        content_type = result.headers.get("Content-Type")
        return await loop.run_in_executor(
            self.parser, extract, result.body, result.final_url, content_type
        )

    def unusable(self, result: FetchResult, entry: FrontierEntry) -> str | None:
        """Why a fetched 2xx page is not parsed: a redirect to a URL already seen, or
        a body that is not HTML."""
        if result.final_url != entry.url and not self.frontier.mark_seen(result.final_url):
            return DROP_REDIRECT_DUPLICATE
        if not is_html(result.headers.get("Content-Type"), result.body):
            return DROP_NOT_HTML
        return None

    async def admit(self, url: str) -> str | None:
        """Check robots.txt (fetching it once per host) and learn the host's Crawl-delay."""
        host = host_key(url)
        policy = await self.robots.policy(host) if self.config.respect_robots else None
        if not self.frontier.delay_known(host):
            crawl_delay = policy.crawl_delay(self.robots.user_agent) if policy else None
            dropped = self.frontier.set_crawl_delay(host, crawl_delay)
            self.drop_all(DROP_CRAWL_DELAY, len(dropped))
        if self.frontier.is_skipped(host):
            return DROP_CRAWL_DELAY
        if policy is not None and not policy.allowed(url, self.robots.user_agent):
            return DROP_ROBOTS
        return None

    async def hop_check(self, url: str) -> str | None:
        """Checks a redirect target before it is requested."""
        if self.config.respect_robots and not await self.robots.allowed(url):
            return DROP_ROBOTS
        return None

    def collect(self, content: PageContent, page_url: str, depth: int) -> None:
        """Turn a parsed HTML page into pairs and queue its links."""
        self.stats.count("images_found", len(content.images) + content.images_skipped)
        self.stats.count("links_found", len(content.links))
        if self.config.respect_robots and content.robots & IMAGE_OPT_OUT:
            self.stats.count("images_opted_out", len(content.images))
        else:
            for image in content.images:
                self.pairs.append(
                    Pair(
                        url=image.url,
                        caption=image.alt,
                        page_url=page_url,
                        source="crawl",
                        page_lang=content.lang,
                        declared_width=image.width,
                        declared_height=image.height,
                    )
                )
            self.stats.count("candidates", len(content.images))
        for link in content.links:
            self.enqueue(link, depth + 1)


async def crawl_pages(
    seeds: list[str],
    config: CrawlConfig,
    stats: StageStats,
    session: aiohttp.ClientSession | None = None,
) -> list[Pair]:
    """Crawl from `seeds` under `config`; one candidate pair per image occurrence.

    Raises `InvalidURLError` naming the first seed that is not an http(s) URL.
    """
    start = time.perf_counter()
    normalized = normalize_seeds(seeds)
    with parse_pool() as parser:
        async with session_for(session, config) as shared:
            pairs = await PageCrawler(shared, config, stats, parser).run(normalized)
    stats.seconds = time.perf_counter() - start
    return pairs


def crawl(seeds: list[str], config: CrawlConfig, stats: StageStats) -> list[Pair]:
    """`crawl_pages` run to completion on a fresh event loop."""
    return asyncio.run(crawl_pages(seeds, config, stats))
