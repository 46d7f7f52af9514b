"""The page crawler on the sandbox web: pages per second with politeness off and on, and
what checkpointing its state costs.

The sandbox (4 hosts, about 300 HTML pages, faults included) is served on loopback in
this process and crawled whole three times, each from fresh state:
  1. politeness off, state in memory: no delay between a host's requests, robots.txt not
     consulted (so no Crawl-delay), 32 connections per host;
  2. the same with the state on disk, committed once per finished page (what
     `make crawl` does): the cost of being resumable after `kill -9`;
  (1 and 2 alternate, best of `ROUNDS` each), then
  3. polite defaults, state on disk: 1 s between requests to a host (raised by its
     Crawl-delay), 2 connections per host, robots.txt obeyed.
Pages/s counts pages fetched (kept or not) over the wall time of the crawl. The polite
figure is bound by the delay, not by the machine: at most one page per second per host,
less while a host waits for links to it to be found on the others.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

from bench.common import BenchResult, timed
from core.config import CrawlConfig, SandboxConfig
from core.stats import StageStats
from crawlers.pages import crawl_into
from sandbox.server import serve_in_thread

log = logging.getLogger(__name__)


def crawl_once(seeds: list[str], config: CrawlConfig, state_path: str) -> tuple[int, float]:
    """Pages fetched and wall seconds of one whole crawl."""
    stats = StageStats("crawl")
    state, seconds = timed(lambda: crawl_into(seeds, config, stats, state_path))
    state.close()
    pages = stats.kept + sum(
        n for reason, n in stats.dropped.items() if reason.startswith("http_") or reason in FETCHED
    )
    log.info("bench crawl: %d pages in %.1f s (%s)", pages, seconds, dict(stats.dropped))
    return pages, seconds


FETCHED = frozenset({"not_html", "redirect_duplicate", "redirect_loop", "timeout"})
ROUNDS = 3


def run() -> BenchResult:
    with serve_in_thread(SandboxConfig()) as web, tempfile.TemporaryDirectory() as folder:
        net = CrawlConfig().net.allowing(web.base_urls)
        off: dict[str, Any] = {
            "per_host_delay": 0.0, "per_host_connections": 32, "respect_robots": False,
        }  # fmt: skip
        fast = CrawlConfig(net=net, **off)
        polite = CrawlConfig(net=net)
        runs = [
            (crawl_once(web.seed_urls, fast, ":memory:"), crawl_once(web.seed_urls, fast, disk))
            for disk in (str(Path(folder) / f"off-{n}.db") for n in range(ROUNDS))
        ]  # alternating, best of ROUNDS each (the first crawl also starts the parser pool)
        pages_memory, memory = min((r[0] for r in runs), key=lambda r: r[1])
        pages_disk, disk = min((r[1] for r in runs), key=lambda r: r[1])
        pages_polite, slow = crawl_once(web.seed_urls, polite, str(Path(folder) / "on.db"))
    return BenchResult(
        name="crawl: sandbox, polite vs off",
        unit="pages",
        items=pages_disk,
        peer="polite (1 s/host, 2 conn)",
        peer_seconds=slow * pages_disk / pages_polite,  # at the polite rate
        ours_seconds=disk,
        note=(
            f"polite: {pages_polite} pages in {slow:.1f} s ({pages_polite / slow:.1f} pages/s);"
            f" off: {pages_disk} pages in {disk:.1f} s ({pages_disk / disk:.1f} pages/s) with"
            f" the state on disk, {pages_memory / memory:.1f} pages/s with it in memory"
        ),
    )
