"""The polite page crawler: seeds in, one candidate `Pair` per `<img>` occurrence out.

What is true as a crawl runs:
- every distinct normalised URL that reaches the crawler is counted once in `stats.seen`
  and ends either kept (fetched, HTML, parsed) or dropped with one reason, so
  `seen == kept + sum(dropped)`; URLs still queued when the page budget runs out are
  dropped as `max_pages`;
- a page is fetched only if robots.txt allows it (each redirect hop too), its host is
  not skipped for a Crawl-delay over `max_crawl_delay`, and it is within the depth,
  per-host and total page caps;
- the crawl ends: pages are capped in total and per host, depth is capped, every fetch
  ends by its deadline, trap-like URLs (too long, too deep, a repeated path segment) are
  never queued, and neither are URLs past `max_urls_per_pattern` distinct URLs of one
  path pattern or `max_query_variants` distinct queries of one path; session-id
  parameters are removed from links before they are seen, so they cannot make a page new;
- the seen-set, the queue, the pairs found and the counts live in a `CrawlState` on disk,
  committed once per finished page: a crawl killed and run again with the same state
  fetches again only the pages that were in flight and records no pair twice;
- pages are parsed in a small pool of processes (`ParsePool`), never on the event loop,
  so fetches in flight keep going while a large or pathological page is parsed; a parser
  process that dies is replaced (the page tried once more), and a pool that keeps dying
  fails the crawl with `ParserError` instead of hanging it.

Drop reasons: robots_disallowed, http_<status>, not_html, redirect_loop,
too_many_redirects, timeout, deadline_exceeded, connection_error, too_large, trap,
trap_path_pattern, trap_query_variants, max_depth, max_pages_per_host, max_pages,
crawl_delay_too_long, private_address, invalid_url, redirect_duplicate, parser_crashed,
parse_timeout.
Counts: images_found, candidates, links_found, retries, duplicate_links, offsite_links,
images_opted_out, robots_fetches, session_ids_removed, parser_restarts.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import multiprocessing
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from types import TracebackType

import aiohttp

from core.config import CrawlConfig
from core.record import Pair
from core.stats import StageStats
from crawlers.crawlstate import CrawlState
from crawlers.fetch import FetchOptions, FetchResult, fetch, session_for
from crawlers.frontier import DROP_CRAWL_DELAY, FrontierEntry, FrontierLimits, HostFrontier
from crawlers.html import IMAGE_OPT_OUT, ImageRef, PageContent, extract, is_html
from crawlers.robots import RobotsCache
from crawlers.urls import (
    InvalidURLError,
    host_key,
    normalize_url,
    path_pattern,
    query_family,
    strip_session_ids,
    trap_reason,
)

log = logging.getLogger(__name__)

DROP_ROBOTS = "robots_disallowed"
DROP_NOT_HTML = "not_html"
DROP_TRAP = "trap"
DROP_TRAP_PATTERN = "trap_path_pattern"
DROP_TRAP_QUERY = "trap_query_variants"
DROP_MAX_PAGES = "max_pages"
DROP_REDIRECT_DUPLICATE = "redirect_duplicate"
DROP_PARSER_CRASHED = "parser_crashed"
DROP_PARSE_TIMEOUT = "parse_timeout"
PARSE_WORKERS = 2  # processes parsing pages for one crawl
MAX_PARSER_RESTARTS = 8  # parser pools replaced before the crawl gives up
PARSE_TIMEOUT = 60.0  # seconds one page may take to parse (a bounded page takes well under 1)


class ParserError(RuntimeError):
    """The page parser processes keep dying: the crawl stops (its state is kept)."""


class ResumeError(ValueError):
    """A crawl state that belongs to other seeds."""


class ParsePool:
    """Processes (from the forkserver) that run `extract` for the crawl's event loop.

    A pool that breaks (a worker killed, out of memory, crashed) fails every parse it had;
    each of those is tried once more in a new pool. A page that breaks the new pool too is
    given up (`parser_crashed`). After `max_restarts` new pools, `ParserError`. A parse
    still running after `timeout` seconds is given up (`parse_timeout`): its pool's
    processes are killed and a new pool takes over (the other parses they held are tried
    again there; this is not counted as a death).
    """

    def __init__(
        self,
        workers: int = PARSE_WORKERS,
        max_restarts: int = MAX_PARSER_RESTARTS,
        timeout: float = PARSE_TIMEOUT,
    ):
        self.workers = workers
        self.max_restarts = max_restarts
        self.timeout = timeout
        self.restarts = 0
        self.generation = 0  # bumped by each replacement, so one break replaces once
        self.pool = self._start()

    def _start(self) -> concurrent.futures.ProcessPoolExecutor:
        context = multiprocessing.get_context("forkserver")
        return concurrent.futures.ProcessPoolExecutor(self.workers, mp_context=context)

    def __enter__(self) -> ParsePool:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)

    async def extract(self, body: bytes, url: str, content_type: str | None) -> PageContent | str:
        """`extract(body, url, content_type)` in a worker, or why it was given up."""
        for _ in range(2):
            generation = self.generation
            try:
                future = self.pool.submit(extract, body, url, content_type)
                return await asyncio.wait_for(asyncio.wrap_future(future), self.timeout)
            except BrokenProcessPool:
                self._replace(generation)
            except TimeoutError:
                self._kill(generation)
                return DROP_PARSE_TIMEOUT
        return DROP_PARSER_CRASHED

    def _kill(self, generation: int) -> None:
        """Replace the pool whose parse overran, then kill its processes."""
        if generation != self.generation:
            return
        self.generation += 1
        log.warning("crawl: a page took over %gs to parse; restarting the parsers", self.timeout)
        stuck, self.pool = self.pool, self._start()
        for process in list(getattr(stuck, "_processes", {}).values()):
            process.kill()  # ProcessPoolExecutor cannot stop a running call otherwise
        stuck.shutdown(wait=False, cancel_futures=True)

    def _replace(self, generation: int) -> None:
        if generation != self.generation:
            return  # another parse of the same break replaced the pool already
        if self.restarts >= self.max_restarts:
            raise ParserError(
                f"the page parser processes died {self.restarts + 1} times (out of memory, "
                "or killed?); the crawl's progress is kept: run it again to resume"
            )
        self.restarts += 1
        self.generation += 1
        log.warning("crawl: a page parser process died; starting new ones")
        broken, self.pool = self.pool, self._start()
        broken.shutdown(wait=False, cancel_futures=True)


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
    """One crawl: a frontier and its state on disk, a robots cache, a session."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        config: CrawlConfig,
        stats: StageStats,
        parser: ParsePool,
        state: CrawlState,
    ) -> None:
        self.session = session
        self.parser = parser
        self.config = config
        self.stats = stats
        self.state = state
        self.options = FetchOptions.for_crawl(config)
        self.robots = RobotsCache(session, self.options)
        self.frontier = HostFrontier(FrontierLimits.from_config(config), state)
        self.attempted = 0  # page fetches started, against config.max_pages
        self.fetched = 0  # of those, the ones whose page is finished (what a resume keeps)
        self.fetching: set[int] = set()  # queue rows of pages being fetched
        self.robots_before = 0  # robots.txt fetches of the runs this one resumes
        self.seed_hosts: set[str] = set()

    async def run(self, seeds: list[str]) -> None:
        """Crawl from `seeds` (already normalised), or resume the crawl the state holds,
        until the frontier is exhausted; the pairs found are in the state."""
        if self.state.get("finished"):
            self.restore()
            return
        if self.state.get("seeds") is None:
            self.start(seeds)
        else:
            self.restore()
            log.info("crawl: resuming with %d URLs queued", self.frontier.resume())
        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(self.config.concurrency):
                    group.create_task(self.work())
        except ExceptionGroup as group_error:
            raise _first_parser_error(group_error) from None
        self.drop_all(DROP_MAX_PAGES, self.frontier.close())
        self.state.put("finished", True)
        self.checkpoint()

    def start(self, seeds: list[str]) -> None:
        self.state.put("seeds", seeds)
        self.seed_hosts = {host_key(seed) for seed in seeds}
        for seed in seeds:
            self.enqueue(seed, depth=0)
        self.checkpoint()

    def restore(self) -> None:
        """Counts and seeds of the runs before this one, from the state."""
        self.seed_hosts = {host_key(seed) for seed in self.state.get("seeds") or []}
        saved = self.state.get("progress") or {}
        self.stats.merge(StageStats.from_dict(saved.get("stats", {"stage": self.stats.stage})))
        self.attempted = self.fetched = int(saved.get("fetched", 0))
        self.robots_before = int(saved.get("robots_fetches", 0))
        self.stats.counts["robots_fetches"] = self.robots_before

    def checkpoint(self) -> None:
        """Commit everything finished so far, with the counts that go with it."""
        self.stats.counts["robots_fetches"] = self.robots_before + self.robots.fetches
        progress = {
            "stats": self.stats.to_dict(),
            "fetched": self.fetched,
            "robots_fetches": self.stats.counts["robots_fetches"],
        }
        self.state.put("progress", progress)
        self.state.commit()

    def drop_all(self, reason: str, n: int) -> None:
        if n:
            self.stats.drop(reason, n)

    # ------------------------------------------------------------ queueing

    def enqueue(self, url: str, depth: int) -> None:
        """Offer a normalised URL to the frontier, counting it once as seen."""
        stripped = strip_session_ids(url)
        if stripped != url:
            self.stats.count("session_ids_removed")
            url = stripped
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
        trap = self.trap_count(url)
        if trap is not None:
            return trap
        if self.config.respect_robots and self.robots.cached_allowed(url) is False:
            return DROP_ROBOTS
        if self.attempted >= self.config.max_pages:
            return DROP_MAX_PAGES
        return self.frontier.add(url, depth)

    def trap_count(self, url: str) -> str | None:
        """Count a new URL under its path pattern and, with a query, its path's query
        variants; the reason when it is one too many."""
        if self.state.bump("pattern " + path_pattern(url)) > self.config.max_urls_per_pattern:
            return DROP_TRAP_PATTERN
        family = query_family(url)
        if family is not None and self.state.bump("query " + family) > (
            self.config.max_query_variants
        ):
            return DROP_TRAP_QUERY
        return None

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
            if entry.row in self.fetching:
                self.fetching.discard(entry.row)
                self.fetched += 1
            self.frontier.done(entry)
            self.checkpoint()  # nothing awaited since the page's last step: it is whole

    async def visit(self, entry: FrontierEntry) -> str | None:
        """Fetch and parse one page; returns why it was dropped, or None if kept."""
        reason = await self.admit(entry.url)
        if reason is not None:
            return reason
        if self.attempted >= self.config.max_pages:
            self.drop_all(DROP_MAX_PAGES, self.frontier.close())
            return DROP_MAX_PAGES
        self.attempted += 1
        self.fetching.add(entry.row)
        result = await fetch(self.session, entry.url, self.options, self.hop_check)
        self.stats.count("retries", result.retries)
        reason = result.failure() or self.not_html(result)
        if reason is not None:
            return reason
        content = await self.parse(result)
        if isinstance(content, str):
            return content  # the parser gave up on it
        # marked seen only now, in the same commit as the page's pairs
        if result.final_url != entry.url and not self.frontier.mark_seen(result.final_url):
            return DROP_REDIRECT_DUPLICATE
        self.collect(content, result.final_url, entry.depth)
        return None

    async def parse(self, result: FetchResult) -> PageContent | str:
        """`extract` of a fetched page, run in the parser pool, or why it was given up."""
        content_type = result.headers.get("Content-Type")
        content = await self.parser.extract(result.body, result.final_url, content_type)
        if self.parser.restarts:
            self.stats.counts["parser_restarts"] = self.parser.restarts
        return content

    def not_html(self, result: FetchResult) -> str | None:
        """Why a fetched 2xx page is not parsed: a body that is not HTML."""
        if not is_html(result.headers.get("Content-Type"), result.body):
            return DROP_NOT_HTML
        return None

    async def admit(self, url: str) -> str | None:
        """Check robots.txt (fetching it once per host) and learn the host's Crawl-delay."""
        host = host_key(url)
        policy = await self.robots.policy(host) if self.config.respect_robots else None
        if not self.frontier.delay_known(host):
            crawl_delay = policy.crawl_delay(self.robots.user_agent) if policy else None
            self.drop_all(DROP_CRAWL_DELAY, self.frontier.set_crawl_delay(host, crawl_delay))
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
        """Turn a parsed HTML page into pairs (into the state) and queue its links."""
        self.stats.count("images_found", len(content.images) + content.images_skipped)
        self.stats.count("links_found", len(content.links))
        if self.config.respect_robots and content.robots & IMAGE_OPT_OUT:
            self.stats.count("images_opted_out", len(content.images))
        else:
            self.state.add_pairs([page_pair(image, page_url, content) for image in content.images])
            self.stats.count("candidates", len(content.images))
        for link in content.links:
            self.enqueue(link, depth + 1)


def page_pair(image: ImageRef, page_url: str, content: PageContent) -> Pair:
    return Pair(
        url=image.url,
        caption=image.alt,
        page_url=page_url,
        source="crawl",
        page_lang=content.lang,
        title=image.title,
        image_title=image.image_title,
        declared_width=image.width,
        declared_height=image.height,
    )


def _first_parser_error(group: ExceptionGroup) -> BaseException:
    """The `ParserError` among a failed task group's errors, else the group itself."""
    for error in group.exceptions:
        if isinstance(error, ParserError):
            return error
    return group


async def crawl_pages(
    seeds: list[str],
    config: CrawlConfig,
    stats: StageStats,
    state: CrawlState,
    session: aiohttp.ClientSession | None = None,
    parser: ParsePool | None = None,
) -> None:
    """Crawl from `seeds` under `config` (or resume the crawl `state` holds); one
    candidate pair per image occurrence, recorded in `state`.

    Raises `InvalidURLError` naming the first seed that is not an http(s) URL, and
    `ParserError` when the parser processes keep dying.
    """
    start = time.perf_counter()
    normalized = normalize_seeds(seeds)
    with contextlib.ExitStack() as stack:
        pool = parser or stack.enter_context(ParsePool())
        async with session_for(session, config) as shared:
            await PageCrawler(shared, config, stats, pool, state).run(normalized)
    stats.seconds = time.perf_counter() - start


def crawl_into(
    seeds: list[str], config: CrawlConfig, stats: StageStats, state_path: str | Path
) -> CrawlState:
    """`crawl_pages` run to completion on a fresh event loop, its state kept in the SQLite
    file `state_path` (resumed when it holds an unfinished crawl); returns the state,
    open, for its pairs to be read."""
    state = CrawlState(state_path)
    try:
        saved = state.get("seeds")
        if saved is not None and saved != normalize_seeds(seeds):
            raise ResumeError(
                f"the crawl in {state_path} began from other seeds: resume it with the same "
                "seeds, or use a new workdir"
            )
        asyncio.run(crawl_pages(seeds, config, stats, state))
    except BaseException:
        state.close()
        raise
    return state


@contextlib.contextmanager
def crawled(
    seeds: list[str], config: CrawlConfig, stats: StageStats, state_path: str | Path | None = None
) -> Iterator[CrawlState]:
    """The state of a finished crawl (a temporary one unless `state_path` is given)."""
    with contextlib.ExitStack() as stack:
        if state_path is None:
            state_path = Path(stack.enter_context(tempfile.TemporaryDirectory())) / "crawl.db"
        state = crawl_into(seeds, config, stats, state_path)
        stack.callback(state.close)
        yield state


def crawl(seeds: list[str], config: CrawlConfig, stats: StageStats) -> list[Pair]:
    """A whole crawl in memory, its state in a temporary file: the pairs, in found order."""
    with crawled(seeds, config, stats) as state:
        return [pair for batch in state.pairs() for pair in batch]
