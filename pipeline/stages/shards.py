"""Stage 3: fetch the selected images and write webdataset shards.

Three resumable passes, each leaving markers so a killed run picks up where it stopped:

    1. fetch + process, one part per future shard: selected pairs, split by `plan_shards`
       (sorted uids, so any number of workers makes the same parts), are downloaded
       asynchronously, as one stream over the unfinished parts, while a process pool
       decodes, resizes, encodes and hashes them; image rules are applied; once a part
       has all its rows, `images/part-NNNNN.parquet` gets them in uid order, each with
       its encoded image.
    2. image dedup, global: exact (sha256) then near-duplicate (pHash, Hamming <= radius)
       over the hash columns of all parts; every decision is a deterministic function of
       the rows, not of their order.
    3. write: part N becomes shard N (`NNNNN.tar` + `.parquet` with every row, failures
       included, + `_stats.json`), shards written in parallel by the process pool; then
       `sizes.json` and `manifest.json`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Iterable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from crawlers.images import fetch_images
from filters.dedup import dedup_images
from filters.image_rules import image_rules
from filters.neardup import remove_near_duplicates
from pipeline.config import PipelineConfig, ShardsConfig, save_config
from pipeline.errors import PipelineError
from pipeline.io import (
    atomic_path,
    is_done,
    mark_done,
    read_pairs,
    remove_stale_temporaries,
)
from pipeline.layout import RunLayout
from pipeline.record import (
    PAIR_SCHEMA,
    STATUS_SUCCESS,
    Pair,
    pairs_to_table,
    table_to_pairs,
)
from pipeline.stages.web import sandbox_if_recorded
from pipeline.stats import StageStats, Timer, tally
from shards.images import ProcessedImage, process_or_fail
from shards.layout import plan_shards, write_manifest, write_sizes_json
from shards.writer import write_shard

log = logging.getLogger(__name__)

IMAGE_COLUMN = "image"
STAGED_SCHEMA = PAIR_SCHEMA.append(pa.field(IMAGE_COLUMN, pa.binary()))


def part_name(part: int) -> str:
    return f"part-{part:05d}"


# What a worker needs, imported once by the fork server rather than by every worker
# (imagehash imports scipy.fftpack on its first hash).
WORKER_MODULES = ["pipeline.stages.shards", "scipy.fftpack"]
WATCH_SECONDS = 1.0  # how often a worker checks that the stage is still alive


# ------------------------------------------------------------- pass 1: fetch + process


def worker_pool(workers: int) -> concurrent.futures.ProcessPoolExecutor:
    """Processes forked from a server that has already imported the stage and its libraries.

    Not `fork`: the sandbox may be serving from a thread of this process. Not `spawn`:
    every spawned worker would import its modules again (about half a second each).
    """
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(WORKER_MODULES)
    return concurrent.futures.ProcessPoolExecutor(
        workers, mp_context=context, initializer=exit_with, initargs=(os.getpid(),)
    )


def exit_with(stage_pid: int) -> None:
    """In a worker: exit once the stage's process is gone (say, killed with SIGKILL).

    A pool worker waits on its task queue forever, so without this a killed stage would
    leave its workers behind.
    """

    def watch() -> None:
        while True:
            time.sleep(WATCH_SECONDS)
            try:
                os.kill(stage_pid, 0)
            except ProcessLookupError:
                os._exit(1)

    threading.Thread(target=watch, name="exit-with-stage", daemon=True).start()


def processed(
    pair: Pair, outcome: tuple[ProcessedImage | None, str, str], config: ShardsConfig
) -> tuple[Pair, bytes | None]:
    """A downloaded pair with its processing outcome: annotated and ruled, or failed."""
    image, status, error = outcome
    if image is None:
        return dataclasses.replace(pair, status=status, error_message=error), None
    return image_rules(image.annotate(pair), config), image.data


class PartCollector:
    """Gathers rows by part as they arrive; a part is staged (in a thread) once complete."""

    def __init__(self, plan: list[list[Pair]], pending: list[int], folder: Path) -> None:
        self.folder = folder
        self.sizes = {part: len(plan[part]) for part in pending}
        self.part_of = {pair.uid: part for part in pending for pair in plan[part]}
        self.rows: dict[int, list[tuple[Pair, bytes | None]]] = {part: [] for part in pending}
        self.writes: list[asyncio.Task[None]] = []

    def add(self, pair: Pair, data: bytes | None) -> None:
        part = self.part_of[pair.uid]
        rows = self.rows[part]
        rows.append((pair, data))
        if len(rows) == self.sizes[part]:
            del self.rows[part]
            write = asyncio.to_thread(stage_part, self.folder, part, rows)
            self.writes.append(asyncio.create_task(write))

    async def drain(self) -> None:
        """Wait for the parts being written; fail if a part is still missing rows."""
        await asyncio.gather(*self.writes)
        if self.rows:
            raise RuntimeError(f"parts {sorted(self.rows)} did not get all their rows")


def staged_table(results: list[tuple[Pair, bytes | None]]) -> pa.Table:
    table = pairs_to_table(pair for pair, _ in results)
    images = pa.array([data for _, data in results], type=pa.binary())
    return table.append_column(IMAGE_COLUMN, images)


def write_staged(path: Path, table: pa.Table) -> None:
    """Write a staged part atomically; the encoded images are stored, not recompressed."""
    codecs = {name: "zstd" for name in table.column_names}
    codecs[IMAGE_COLUMN] = "none"
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression=codecs)


def stage_part(folder: Path, part: int, rows: list[tuple[Pair, bytes | None]]) -> None:
    """Write a complete part, its rows in uid order, then its marker."""
    rows.sort(key=lambda item: item[0].uid)
    write_staged(folder / f"{part_name(part)}.parquet", staged_table(rows))
    mark_done(folder, part_name(part), {"rows": len(rows)})
    log.info("shards: fetched part %d (%d images)", part, len(rows))


async def fetch_pending(
    plan: list[list[Pair]],
    pending: list[int],
    config: ShardsConfig,
    folder: Path,
    stats: StageStats,
    pool: concurrent.futures.Executor,
) -> None:
    """Download the pending parts' images as one stream while the pool processes them.

    One stream, one session, no pause between parts: each part is staged as soon as its
    last row arrives, while the next part's images are already downloading.
    """
    loop = asyncio.get_running_loop()
    slots = asyncio.Semaphore(4 * max(1, config.workers))
    collector = PartCollector(plan, pending, folder)
    running: set[asyncio.Task[None]] = set()

    async def process(pair: Pair, data: bytes) -> None:
        try:
            outcome = await loop.run_in_executor(pool, process_or_fail, data, config)
        finally:
            slots.release()
        collector.add(*processed(pair, outcome, config))

    pairs = (pair for part in pending for pair in plan[part])
    async for pair, data in fetch_images(pairs, config, stats):
        if data is None or pair.status != STATUS_SUCCESS:
            collector.add(pair, None)
            continue
        await slots.acquire()
        raise_failure(running)
        running.add(asyncio.create_task(process(pair, data)))
    await asyncio.gather(*running)
    await collector.drain()


def raise_failure(running: set[asyncio.Task[None]]) -> None:
    """Forget the finished tasks; re-raise the first failure among them (a broken pool)."""
    done = {task for task in running if task.done()}
    running.difference_update(done)
    for task in done:
        task.result()


def fetch_parts(
    plan: list[list[Pair]],
    config: ShardsConfig,
    layout: RunLayout,
    stats: StageStats,
    pool: concurrent.futures.Executor,
) -> None:
    """Fetch and stage every part that has no marker yet."""
    folder = layout.images_dir
    pending = [part for part in range(len(plan)) if not is_done(folder, part_name(part))]
    if pending:
        asyncio.run(fetch_pending(plan, pending, config, folder, stats, pool))


# ------------------------------------------------------------- pass 2: image dedup


def read_staged_pairs(layout: RunLayout, parts: int) -> list[Pair]:
    columns = [f.name for f in PAIR_SCHEMA]
    pairs: list[Pair] = []
    for part in range(parts):
        path = layout.images_dir / f"{part_name(part)}.parquet"
        pairs += table_to_pairs(pq.read_table(path, columns=columns))
    return pairs


def image_dedup_decisions(pairs: Iterable[Pair], radius: int) -> dict[str, str]:
    """uid -> drop reason for the images that duplicate (exactly or nearly) another."""
    kept = [p for p in pairs if p.kept]
    after_exact = list(dedup_images(kept))
    after_near = list(remove_near_duplicates(after_exact, radius))
    return {p.uid: p.drop_reason for p in after_near if p.drop_reason is not None}


# ------------------------------------------------------------- pass 3: write shards


def stored_image(pair: Pair, data: bytes, encode_format: str) -> ProcessedImage:
    return ProcessedImage(
        data=data,
        width=pair.width or 0,
        height=pair.height or 0,
        original_width=pair.original_width or 0,
        original_height=pair.original_height or 0,
        sha256=pair.sha256 or "",
        phash=pair.phash or 0,
        format=encode_format,
    )


def shard_samples(
    part: int, layout: RunLayout, decisions: dict[str, str], config: ShardsConfig
) -> list[tuple[Pair, ProcessedImage | None]]:
    """Part `part`'s staged rows with the dedup decisions applied, and their images."""
    table = pq.read_table(layout.images_dir / f"{part_name(part)}.parquet")
    images = table.column(IMAGE_COLUMN).to_pylist()
    samples = []
    for pair, data in zip(table_to_pairs(table.drop([IMAGE_COLUMN])), images, strict=True):
        if pair.uid in decisions:
            pair = pair.dropped(decisions[pair.uid])
        image = stored_image(pair, data, config.encode_format) if pair.kept and data else None
        samples.append((pair, image))
    return samples


def write_part_shard(
    part: int, layout: RunLayout, decisions: dict[str, str], config: ShardsConfig
) -> list[Pair]:
    """Write shard `part` from its staged part (in a worker process); returns its rows."""
    samples = shard_samples(part, layout, decisions, config)
    return write_shard(
        layout.shards_dir, part, samples, config.encode_format, config.samples_per_shard
    )


def shard_rows(layout: RunLayout, part: int) -> list[Pair]:
    return list(read_pairs(layout.shards_dir / f"{part:05d}.parquet"))


def all_shard_rows(
    plan: list[list[Pair]],
    layout: RunLayout,
    decisions: dict[str, str],
    config: ShardsConfig,
    pool: concurrent.futures.Executor,
) -> list[Pair]:
    """Every shard's rows: read back where the shard is done, else written now by the pool."""
    rows: list[Pair] = []
    writing = []
    for part, pairs in enumerate(plan):
        if is_done(layout.shards_dir, f"{part:05d}"):
            rows += shard_rows(layout, part)
            continue
        mine = {p.uid: decisions[p.uid] for p in pairs if p.uid in decisions}
        writing.append(pool.submit(write_part_shard, part, layout, mine, config))
    for future in writing:
        rows += future.result()
    return rows


# ------------------------------------------------------------- the stage


def selected_pairs(layout: RunLayout) -> list[Pair]:
    if not is_done(layout.curate_dir, "curate"):
        raise PipelineError(f"no finished curation in {layout.curate_dir}: run curate first")
    return [p for p in read_pairs(layout.curated) if p.kept]


def run_shards(config: PipelineConfig) -> StageStats:
    layout = RunLayout(config.root)
    if is_done(layout.shards_dir, "shards"):
        log.info("shards: already done in %s", layout.shards_dir)
        return StageStats.load(layout.stats_file("shards"))
    selected = {p.uid: p for p in selected_pairs(layout)}
    plan = [
        [selected[uid] for uid in uids]
        for uids in plan_shards(selected, config.shards.samples_per_shard)
    ]
    stats = StageStats("shards")
    fetch_stats = StageStats("fetch")  # download outcomes in detail, for this run's parts
    for folder in (layout.images_dir, layout.shards_dir):
        remove_stale_temporaries(folder)
    with Timer() as timer, worker_pool(config.shards.workers) as pool:
        with sandbox_if_recorded(config, layout) as web:
            cfg = config.shards
            if web is not None:  # the sandbox is on loopback, refused unless allowed
                cfg = dataclasses.replace(cfg, allow_private_addresses=True)
            fetch_parts(plan, cfg, layout, fetch_stats, pool)
        decisions = image_dedup_decisions(read_staged_pairs(layout, len(plan)), cfg.near_dup_radius)
        list(tally(all_shard_rows(plan, layout, decisions, cfg, pool), stats))
        write_sizes_json(layout.shards_dir)
        write_manifest(layout.shards_dir)
    stats.seconds = timer.seconds
    stats.count("shards", len(plan))
    # The rows say failed_to_download; the downloader knows why (http_404, timeout...).
    for reason, n in fetch_stats.dropped.items():
        stats.count(f"download:{reason}", n)
    for name, n in fetch_stats.counts.items():
        stats.count(f"download_{name}", n)
    stats.save(layout.stats_file("shards"))
    save_config(config, layout.shards_dir / "config.toml")
    mark_done(layout.shards_dir, "shards", {"shards": len(plan), "samples": stats.kept})
    return stats
