"""Curation at scale: an img2dataset-style URL list of 1M and 4M rows, crawl then curate.

Input: URL lists built from the 10,000 real alt texts of img2dataset's test file (each
row a real caption, made distinct by a `#<row>` tag that matches no entry (and keeps
file-name and junk alts from their rules), with a URL of its own; 3% of rows repeat an
earlier (caption, URL) and 10% an earlier URL, so every dedup step has work) and the
shipped English query list (`filters/querylists/en.txt.gz`). Each run is `python -m
pipeline crawl --url-list` then `curate` with `curate.language_engine=none` (the
throughput figure is everything but the language detector, whose speed is its own),
default `part_rows`.

Measured: curation rows per second (candidates in / the curate command's wall time) on
one worker (the per-core figure) and on two, and the peak resident memory of the stage's
whole process tree (the stage and its workers, sampled every 50 ms from /proc) at 1M and
4M rows. The peer is the matcher alone (`filters.matching`, itself faster than MetaCLIP's
pyahocorasick matcher: `python -m bench matching`) over the same captions in one process:
the anchor the issue sets (the rest of curation must not cost more than matching does).
On this machine two processes run at about 60-75% of one's speed each, so two workers are
well short of twice one.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from bench.common import REPO, BenchResult, timed
from bench.matching import real_alt_texts
from filters.matching import QueryMatcher, match_captions
from filters.queries import load_queries, shipped_list, write_queries

SIZES = (1_000_000, 4_000_000)
WORKERS = 2


def write_url_list(path: Path, rows: int, texts: list[str]) -> None:
    chooser = random.Random(rows)
    writer = None
    batch = 500_000
    for start in range(0, rows, batch):
        urls, captions = [], []
        for i in range(start, min(rows, start + batch)):
            roll = chooser.random()
            if roll < 0.03 and i:  # the same pair again
                j = chooser.randrange(i)
                urls.append(f"http://img{j % 997}.example.com/p/{j}.jpg")
                captions.append(f"{texts[j % len(texts)]} #{j}")
            elif roll < 0.13 and i:  # an earlier image URL with another caption
                j = chooser.randrange(i)
                urls.append(f"http://img{j % 997}.example.com/p/{j}.jpg")
                captions.append(f"{texts[i % len(texts)]} #{i}")
            else:
                urls.append(f"http://img{i % 997}.example.com/p/{i}.jpg")
                captions.append(f"{texts[i % len(texts)]} #{i}")
        table = pa.table({"url": urls, "caption": captions})
        if writer is None:
            writer = pq.ParquetWriter(path, table.schema)
        writer.write_table(table)
    assert writer is not None
    writer.close()


def tree_rss(root: int) -> int:
    """Resident bytes of `root` and all its descendants, from /proc."""
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            statm = (entry / "statm").read_text().split()
        except OSError:
            continue
        pid = int(entry.name)
        parents[pid] = int(stat.rsplit(")", 1)[1].split()[1])
        rss[pid] = int(statm[1]) * os.sysconf("SC_PAGE_SIZE")
    tree, frontier = {root}, {root}
    while frontier:
        frontier = {p for p, parent in parents.items() if parent in frontier} - tree
        tree |= frontier
    return sum(rss.get(p, 0) for p in tree)


def run_stage(args: list[str]) -> tuple[float, int]:
    """Run one CLI command; (wall seconds, peak RSS of its process tree)."""
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "pipeline", *args, "-q"], cwd=REPO)
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, tree_rss(process.pid))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    code = process.wait()
    done.set()
    sampler.join()
    if code:
        raise RuntimeError(f"pipeline {' '.join(args)} exited {code}")
    return time.perf_counter() - started, peak


def crawled(rows: int, texts: list[str], queries: Path, root: Path) -> list[str]:
    """A run folder whose crawl read a `rows`-row URL list; the CLI options to curate it."""
    url_list = root / f"urls-{rows}.parquet"
    write_url_list(url_list, rows, texts)
    workdir = root / f"run-{rows}"
    common = [
        "--workdir", str(workdir), "--set", f"curate.queries='{queries}'",
        "--set", "curate.language_engine='none'",
    ]  # fmt: skip
    run_stage(["crawl", "--url-list", str(url_list), *common])
    return common


def curate_run(common: list[str], workers: int) -> tuple[float, int]:
    """Curate a crawled run folder (afresh) with `workers` local workers."""
    shutil.rmtree(Path(common[1]) / "curate", ignore_errors=True)
    return run_stage(["curate", *common, "--set", f"executor.workers={workers}"])


def run() -> BenchResult:
    texts = real_alt_texts()
    entries = load_queries(shipped_list())
    (REPO / "runs").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=REPO / "runs") as tmp:
        root = Path(tmp)
        queries = root / "queries.txt"
        write_queries(queries, entries)
        small, large = (crawled(rows, texts, queries, root) for rows in SIZES)
        small_seconds, small_peak = curate_run(small, WORKERS)
        large_seconds, large_peak = curate_run(large, WORKERS)
        one_seconds, one_peak = curate_run(large, 1)
    matcher = QueryMatcher(entries)
    captions = pa.array([f"{texts[i % len(texts)]} #{i}" for i in range(SIZES[0])])
    _, match_seconds = timed(lambda: match_captions(captions, matcher))
    return BenchResult(
        name="curation, 1 worker (no lang.)",
        unit="candidates",
        items=SIZES[1],
        peer="matcher alone, 1 process",
        peer_seconds=match_seconds * SIZES[1] / SIZES[0],
        ours_seconds=one_seconds,
        note=(
            f"4M rows on 1 worker: {SIZES[1] / one_seconds:,.0f} rows/s (per core), peak"
            f" {one_peak / 2**30:.2f} GiB; on {WORKERS} workers: {SIZES[1] / large_seconds:,.0f}"
            f" rows/s, peak {large_peak / 2**30:.2f} GiB; 1M rows on {WORKERS} workers:"
            f" {SIZES[0] / small_seconds:,.0f} rows/s, peak {small_peak / 2**30:.2f} GiB;"
            f" memory 4M/1M = {large_peak / small_peak:.2f}x; {len(entries):,} entries;"
            " wall time of the whole `curate` command, process start included"
        ),
    )
