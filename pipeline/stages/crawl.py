"""Stage 1: collect candidate (image URL, alt text) pairs as parts.

From pages crawled from `crawl.seeds` (a file of URLs, one per line), or from the rows of
img2dataset-style URL lists (`crawl.url_list`: a file, a folder of them, or a glob; local
or on object storage). With neither, the sandbox web is served on loopback and crawled,
and its query list and held-out set are written beside the run for the later stages.

Output: `crawl/parts/part-FFFFF-NNNNN.parquet`, at most `part_rows` rows each, in
`PAIR_SCHEMA`, each with its marker. A URL list is read by one task per input file (file
F of the sorted inputs), spread over the executor; a finished file is skipped on resume,
and so is every finished part of a file that was cut short.
"""

from __future__ import annotations

import dataclasses
import functools
import glob
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from crawlers.pages import crawl, normalize_seeds
from crawlers.urllist import FORMATS, read_url_batches
from crawlers.urls import InvalidURLError
from executors import make_executor
from pipeline import storage
from pipeline.config import PipelineConfig, save_config
from pipeline.errors import PipelineError
from pipeline.io import done_info, is_done, mark_done, remove_stale_temporaries, write_text
from pipeline.layout import RunLayout
from pipeline.parts import PartWriter
from pipeline.progress import Progress
from pipeline.record import Pair, pairs_to_table
from pipeline.stages.web import sandbox_web, uses_sandbox
from pipeline.stats import StageStats, Timer
from sandbox.concepts import query_list
from sandbox.heldout import write_heldout

log = logging.getLogger(__name__)


def read_seeds(path: str | Path) -> list[str]:
    """Seed URLs from a file: one per line, blank lines and `#` comments skipped."""
    try:
        lines = storage.read_text(path).splitlines()
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


def url_list_files(spec: str) -> list[str]:
    """The input files named by `crawl.url_list`: a file, a folder of lists, or a glob."""
    if any(ch in spec for ch in "*?["):
        if storage.is_remote(spec):
            fs = storage.filesystem(spec)
            protocol = spec.split("://", 1)[0]
            files = [f"{protocol}://{p}" for p in fs.glob(spec)]
        else:
            files = glob.glob(spec)
    elif storage.is_dir(spec):
        files = [
            f
            for f in storage.list_files(spec)
            if f.rsplit(".", 1)[-1].lower() in (*FORMATS, "json")
        ]
    elif storage.is_file(spec):
        files = [spec]
    else:
        raise PipelineError(f"URL list not found: {spec}")
    if not files:
        raise PipelineError(f"no URL list files match {spec}")
    return sorted(files)


def read_list_file(config: PipelineConfig, files: tuple[str, ...], index: int) -> dict[str, Any]:
    """One task: URL list file `index` -> parts `part-<index>-NNNNN` (resumable)."""
    layout = RunLayout(config.root)
    name = f"list-{index:05d}"
    if is_done(layout.candidates, name):
        return done_info(layout.candidates, name)
    cfg = config.crawl
    stats = StageStats("crawl")
    with PartWriter(layout.candidates, f"part-{index:05d}", config.part_rows) as parts:
        for table in read_url_batches(files[index], cfg.url_col, cfg.caption_col or None, stats):
            parts.write(table)
    info = stats.to_dict() | {"parts": parts.parts, "file": files[index]}
    mark_done(layout.candidates, name, info)
    return info


def read_url_lists(config: PipelineConfig, stats: StageStats, quiet: bool) -> int:
    """Read every URL list file into parts; returns the number of candidates."""
    files = tuple(url_list_files(config.crawl.url_list))
    task: Callable[[int], dict[str, Any]] = functools.partial(read_list_file, config, files)
    executor = make_executor(
        config.executor.kind, config.executor.workers, config.executor.ray_address,
        preload=["pipeline.stages.crawl"],
    )  # fmt: skip
    with executor, Progress("crawl", "read URL lists", len(files), quiet) as progress:
        for _, info in executor.map(task, list(range(len(files)))):
            stats.merge(StageStats.from_dict(info))
            progress.part_done(rows=int(info["seen"]), dropped=int(info["seen"] - info["kept"]))
    return stats.kept


def write_candidates(config: PipelineConfig, layout: RunLayout, pairs: list[Pair]) -> int:
    with PartWriter(layout.candidates, "part-00000", config.part_rows) as parts:
        parts.write(pairs_to_table(pairs))
    return parts.rows


def run_crawl(config: PipelineConfig, quiet: bool = False) -> StageStats:
    layout = RunLayout(config.root)
    if is_done(layout.crawl_dir, "crawl"):
        log.info("crawl: already done in %s", layout.crawl_dir)
        return StageStats.load(layout.stats_file("crawl"))
    stats = StageStats("crawl")
    remove_stale_temporaries(layout.crawl_dir)
    with Timer() as timer:
        if config.crawl.url_list:
            rows = read_url_lists(config, stats, quiet)
        elif uses_sandbox(config):
            rows = write_candidates(config, layout, _crawl_sandbox(config, layout, stats))
        else:
            pairs = crawl(read_seeds(config.crawl.seeds), config.crawl, stats)
            rows = write_candidates(config, layout, pairs)
    stats.seconds = timer.seconds
    stats.counts["candidates"] = rows  # the crawler may have counted them already
    if rows == 0:
        why = (
            "the URL lists have no row with a URL"
            if config.crawl.url_list
            else ("no page gave an <img> with alt text (see crawl_stats.json for the pages' fates)")
        )
        log.warning("crawl: no candidates: %s", why)
    stats.save(layout.stats_file("crawl"))
    save_config(config, storage.join(layout.crawl_dir, "config.toml"))
    mark_done(layout.crawl_dir, "crawl", {"candidates": rows})
    return stats


def _crawl_sandbox(config: PipelineConfig, layout: RunLayout, stats: StageStats) -> list[Pair]:
    write_text(layout.sandbox_queries, "\n".join(query_list(config.sandbox)) + "\n")
    write_heldout(config.sandbox, layout.heldout_dir)
    # The sandbox lives on loopback, which the crawler refuses unless told otherwise.
    crawl_config = dataclasses.replace(config.crawl, allow_private_addresses=True)
    with sandbox_web(config, layout) as web:
        log.info("crawl: sandbox web at %s", ", ".join(web.base_urls))
        return crawl(web.seed_urls, crawl_config, stats)
