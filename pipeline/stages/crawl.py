"""Stage 1: collect candidate (image URL, alt text) pairs.

From pages crawled from `crawl.seeds` (a file of URLs, one per line), or from the rows of
an img2dataset-style URL list (`crawl.url_list`). With neither, the sandbox web is served
on loopback and crawled, and its query list and held-out set are written beside the run
for the later stages.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from crawlers.pages import crawl, normalize_seeds
from crawlers.urllist import read_url_list
from crawlers.urls import InvalidURLError
from pipeline.config import PipelineConfig, save_config
from pipeline.errors import PipelineError
from pipeline.io import is_done, mark_done, remove_stale_temporaries, write_pairs, write_text
from pipeline.layout import RunLayout
from pipeline.record import Pair
from pipeline.stages.web import sandbox_web, uses_sandbox
from pipeline.stats import StageStats, Timer
from sandbox.concepts import query_list
from sandbox.heldout import write_heldout

log = logging.getLogger(__name__)


def read_seeds(path: str | Path) -> list[str]:
    """Seed URLs from a file: one per line, blank lines and `#` comments skipped."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise PipelineError(f"seeds file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PipelineError(f"cannot read seeds file {path}: {exc}") from None
    try:
        seeds = normalize_seeds(lines)
    except InvalidURLError as exc:
        raise PipelineError(f"{path}: {exc}") from None
    if not seeds:
        raise PipelineError(f"seeds file has no URLs: {path}")
    return seeds


def read_candidates(config: PipelineConfig, stats: StageStats) -> list[Pair]:
    """The rows of `crawl.url_list` as candidates (no page is fetched)."""
    cfg = config.crawl
    if not Path(cfg.url_list).is_file():
        raise PipelineError(f"URL list not found: {cfg.url_list}")
    return list(read_url_list(cfg.url_list, cfg.url_col, cfg.caption_col or None, stats))


def run_crawl(config: PipelineConfig) -> StageStats:
    layout = RunLayout(config.root)
    if is_done(layout.crawl_dir, "crawl"):
        log.info("crawl: already done in %s", layout.crawl_dir)
        return StageStats.load(layout.stats_file("crawl"))
    stats = StageStats("crawl")
    remove_stale_temporaries(layout.crawl_dir)
    with Timer() as timer:
        if config.crawl.url_list:
            pairs = read_candidates(config, stats)
        elif uses_sandbox(config):
            pairs = _crawl_sandbox(config, layout, stats)
        else:
            pairs = crawl(read_seeds(config.crawl.seeds), config.crawl, stats)
        write_pairs(layout.candidates, pairs)
    stats.seconds = timer.seconds
    stats.save(layout.stats_file("crawl"))
    save_config(config, layout.crawl_dir / "config.toml")
    mark_done(layout.crawl_dir, "crawl", {"candidates": len(pairs)})
    return stats


def _crawl_sandbox(config: PipelineConfig, layout: RunLayout, stats: StageStats) -> list[Pair]:
    write_text(layout.sandbox_queries, "\n".join(query_list(config.sandbox)) + "\n")
    write_heldout(config.sandbox, layout.heldout_dir)
    # The sandbox lives on loopback, which the crawler refuses unless told otherwise.
    crawl_config = dataclasses.replace(config.crawl, allow_private_addresses=True)
    with sandbox_web(config, layout) as web:
        log.info("crawl: sandbox web at %s", ", ".join(web.base_urls))
        return crawl(web.seed_urls, crawl_config, stats)
