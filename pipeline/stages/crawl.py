"""Stage 1: collect candidate (image URL, alt text) pairs as parts.

From pages crawled from `crawl.seeds` (a file of URLs, one per line), from the rows of
img2dataset-style URL lists (`crawl.url_list`: a file, a folder of them, or a glob; local
or on object storage), or from Common Crawl archives (`crawl.wat`, `crawl.warc`: the same,
or a paths file such as `wat.paths.gz` whose lines are joined to `crawl.archive_base`).
With none, the sandbox web is served on loopback and crawled, and its query list and
held-out set are written beside the run for the later stages.

Output: `crawl/parts/part-FFFFF-NNNNN.parquet`, at most `part_rows` rows each, in
`PAIR_SCHEMA`, each with its marker. URL lists and archives are read by one task per
input file (file F of the sorted inputs, or of the paths file in its order), spread over
the executor; a finished file is skipped on resume (its marker records which file it was),
and so is every finished part of a file that was cut short. A page crawl keeps its
frontier, seen-set and pairs in `crawl/_work/crawl.db` (SQLite, committed per page): a
killed crawl resumes there, fetching again only the pages that were in flight; its pairs
then go to the parts in the order they were found, and the file is removed once the
stage is done. (With the run folder on object storage the file lives in a temporary
folder, and a killed crawl starts over.)
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import glob
import gzip
import logging
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from core import storage
from core.config import CrawlConfig, PipelineConfig, save_config
from core.errors import PipelineError
from core.io import done_info, is_done, mark_done, remove_stale_temporaries, write_text
from core.layout import RunLayout
from core.parts import PartWriter
from core.progress import Progress
from core.record import pairs_to_table
from core.stats import StageStats, Timer
from crawlers.crawlstate import CrawlState
from crawlers.pages import ParserError, ResumeError, crawl_into, normalize_seeds
from crawlers.urllist import FORMATS, read_url_batches
from crawlers.urls import InvalidURLError
from crawlers.warc import read_warc_batches
from crawlers.wat import read_wat_batches
from executors import make_executor
from pipeline.stages.web import sandbox_web, uses_sandbox
from sandbox.concepts import query_list
from sandbox.heldout import write_heldout

log = logging.getLogger(__name__)

PATHS_SUFFIXES = (".paths", ".paths.gz")  # Common Crawl's lists of a crawl's files
ARCHIVE_SUFFIXES = {"wat": (".wat", ".wat.gz"), "warc": (".warc", ".warc.gz")}


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


def input_files(spec: str, wanted: Callable[[str], bool], what: str) -> list[str]:
    """The files named by `spec`, sorted: a file, a folder's files that `wanted` keeps, or a
    glob (local or remote)."""
    if any(ch in spec for ch in "*?["):
        if storage.is_remote(spec):
            fs = storage.filesystem(spec)
            protocol = spec.split("://", 1)[0]
            files = [f"{protocol}://{p}" for p in fs.glob(spec)]
        else:
            files = glob.glob(spec)
    elif storage.is_dir(spec):
        files = [f for f in storage.list_files(spec) if wanted(f)]
    elif storage.is_file(spec):
        files = [spec]
    else:
        raise PipelineError(f"{what} not found: {spec}")
    if not files:
        raise PipelineError(f"no {what} files match {spec}")
    return sorted(files)


def url_list_files(spec: str) -> list[str]:
    """The input files named by `crawl.url_list`: a file, a folder of lists, or a glob."""
    suffixes = (*FORMATS, "json")
    return input_files(spec, lambda f: f.rsplit(".", 1)[-1].lower() in suffixes, "URL list")


def archive_files(cfg: CrawlConfig, kind: str) -> list[str]:
    """The archives named by `crawl.wat` or `crawl.warc` (`kind`): a paths file's entries in
    its order, else a file, a folder's `.wat[.gz]` / `.warc[.gz]` files or a glob, sorted;
    the first `max_archive_files` of them when that is set."""
    spec: str = getattr(cfg, kind)
    if spec.lower().endswith(PATHS_SUFFIXES) and storage.is_file(spec):
        files = paths_file_entries(spec, cfg.archive_base)
    else:
        suffixes = ARCHIVE_SUFFIXES[kind]
        files = input_files(spec, lambda f: f.lower().endswith(suffixes), f"{kind.upper()} input")
    return files[: cfg.max_archive_files] if cfg.max_archive_files else files


def paths_file_entries(spec: str, base: str) -> list[str]:
    """A Common Crawl paths file (`wat.paths.gz`): one path a line, joined to `base`
    (a line that is already a URL is kept as it is)."""
    try:
        data = storage.read_bytes(spec)
        text = (gzip.decompress(data) if spec.lower().endswith(".gz") else data).decode("utf-8")
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise PipelineError(f"cannot read paths file {spec}: {exc}") from None
    entries = [line.strip() for line in text.splitlines()]
    entries = [e for e in entries if e and not e.startswith("#")]
    if not entries:
        raise PipelineError(f"paths file lists no files: {spec}")
    if not base and any("://" not in e for e in entries):
        raise PipelineError(f"{spec}: relative paths need crawl.archive_base (a URL or folder)")
    return [e if "://" in e else storage.join(base, e.lstrip("/")) for e in entries]


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
    run_file_tasks(config, task, len(files), "read URL lists", stats, quiet)
    if stats.kept == 0:
        raise empty_url_list(config)
    return stats.kept


def empty_url_list(config: PipelineConfig) -> PipelineError:
    """The error for URL lists without one URL; their (empty) parts and markers are removed
    first, so that a rerun after the lists are fixed reads them again."""
    storage.remove_tree(RunLayout(config.root).candidates)
    cfg = config.crawl
    return PipelineError(
        f"the URL list {cfg.url_list} has no rows with a URL in column {cfg.url_col!r}: "
        "add rows, or name the URL column with --set crawl.url_col=NAME"
    )


def read_archive_file(
    config: PipelineConfig, kind: str, files: tuple[str, ...], index: int
) -> dict[str, Any]:
    """One task: WAT or WARC file `index` -> parts `part-<index>-NNNNN` (resumable)."""
    layout = RunLayout(config.root)
    name = f"{kind}-{index:05d}"
    if is_done(layout.candidates, name):
        info = done_info(layout.candidates, name)
        if info.get("file") != files[index]:
            raise PipelineError(
                f"input {index} was {info.get('file')} when this run began and is now "
                f"{files[index]}: resume with the same inputs, or use a new workdir"
            )
        return info
    stats = StageStats("crawl")
    read = read_wat_batches if kind == "wat" else read_warc_batches
    with PartWriter(layout.candidates, f"part-{index:05d}", config.part_rows) as parts:
        for table in read(files[index], stats, config.crawl.respect_robots):
            parts.write(table)
    info = stats.to_dict() | {"parts": parts.parts, "rows": parts.rows, "file": files[index]}
    mark_done(layout.candidates, name, info)
    return info


def read_archives(config: PipelineConfig, stats: StageStats, quiet: bool) -> int:
    """Read every WAT or WARC file into parts; returns the number of candidates."""
    kind = "wat" if config.crawl.wat else "warc"
    files = tuple(archive_files(config.crawl, kind))
    task: Callable[[int], dict[str, Any]] = functools.partial(
        read_archive_file, config, kind, files
    )
    infos = run_file_tasks(config, task, len(files), f"read {kind.upper()} files", stats, quiet)
    return sum(int(info["rows"]) for info in infos)


def run_file_tasks(
    config: PipelineConfig,
    task: Callable[[int], dict[str, Any]],
    count: int,
    label: str,
    stats: StageStats,
    quiet: bool,
) -> list[dict[str, Any]]:
    """Run `task` for input files 0..count-1 on the executor, merging their stats."""
    executor = make_executor(
        config.executor.kind, config.executor.workers, config.executor.ray_address,
        preload=["pipeline.stages.crawl"],
    )  # fmt: skip
    infos = []
    with executor, Progress("crawl", label, count, quiet) as progress:
        for _, info in executor.map(task, list(range(count))):
            stats.merge(StageStats.from_dict(info))
            progress.part_done(rows=int(info["seen"]), dropped=int(info["seen"] - info["kept"]))
            infos.append(info)
    return infos


def write_candidates(config: PipelineConfig, layout: RunLayout, state: CrawlState) -> int:
    """The pairs of a finished crawl, in the order found, as parts."""
    with PartWriter(layout.candidates, "part-00000", config.part_rows) as parts:
        for batch in state.pairs(config.part_rows):
            parts.write(pairs_to_table(batch))
    return parts.rows


@contextlib.contextmanager
def crawl_state_path(layout: RunLayout) -> Iterator[str]:
    """Where the page crawl keeps its state: beside the run when the run is local."""
    if storage.is_remote(layout.crawl_dir):
        with tempfile.TemporaryDirectory(prefix="crawl-") as folder:
            yield storage.join(folder, "crawl.db")
        return
    yield storage.join(layout.crawl_dir, "_work", "crawl.db")


def crawl_seeds(
    config: PipelineConfig, layout: RunLayout, seeds: list[str], crawl_config: CrawlConfig,
    stats: StageStats,
) -> int:  # fmt: skip
    """Crawl (or resume crawling) from `seeds`; returns the number of candidates."""
    with crawl_state_path(layout) as path:
        try:
            state = crawl_into(seeds, crawl_config, stats, path)
        except (ParserError, ResumeError) as exc:
            raise PipelineError(f"crawl: {exc}") from None
        with contextlib.closing(state):
            return write_candidates(config, layout, state)


def remove_crawl_state(layout: RunLayout) -> None:
    """Remove a finished page crawl's SQLite file (and its folder, when that is empty)."""
    if storage.is_remote(layout.crawl_dir):
        return
    folder = Path(storage.local(storage.join(layout.crawl_dir, "_work")))
    for suffix in ("", "-wal", "-shm"):
        (folder / f"crawl.db{suffix}").unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        folder.rmdir()


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
        elif config.crawl.wat or config.crawl.warc:
            rows = read_archives(config, stats, quiet)
        elif uses_sandbox(config):
            rows = _crawl_sandbox(config, layout, stats)
        else:
            rows = crawl_seeds(config, layout, read_seeds(config.crawl.seeds), config.crawl, stats)
    stats.seconds = timer.seconds
    stats.counts["candidates"] = rows  # the crawler may have counted them already
    if rows == 0:  # an empty URL list is an error (read_url_lists); pages may give nothing
        what = "archived page" if config.crawl.wat or config.crawl.warc else "page"
        why = f"no {what} gave an <img> with alt text (see crawl_stats.json for their fates)"
        log.warning("crawl: no candidates: %s", why)
    stats.save(layout.stats_file("crawl"))
    save_config(config, storage.join(layout.crawl_dir, "config.toml"))
    mark_done(layout.crawl_dir, "crawl", {"candidates": rows})
    remove_crawl_state(layout)
    return stats


def _crawl_sandbox(config: PipelineConfig, layout: RunLayout, stats: StageStats) -> int:
    write_text(layout.sandbox_queries, "\n".join(query_list(config.sandbox)) + "\n")
    write_heldout(config.sandbox, layout.heldout_dir)
    with sandbox_web(config, layout) as web:
        log.info("crawl: sandbox web at %s", ", ".join(web.base_urls))
        # The sandbox lives on loopback: allow exactly its host:port origins, nothing else.
        # It is our own web, so no delay between its pages (robots.txt Crawl-delay aside).
        net = config.net.allowing(web.base_urls)
        sandbox = dataclasses.replace(config.crawl, net=net, per_host_delay=0.0)
        return crawl_seeds(config, layout, web.seed_urls, sandbox, stats)
