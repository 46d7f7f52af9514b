"""Stage 3: fetch the selected images and write webdataset shards.

Three resumable passes, each leaving markers so a killed run picks up where it stopped:

    1. fetch + process, one part per future shard: selected pairs, split by `plan_shards`
       (sorted uids, so any number of workers makes the same parts), are downloaded
       asynchronously while a process pool decodes, resizes, encodes and hashes them;
       image rules are applied; `images/part-NNNNN.parquet` holds every row plus the
       encoded image.
    2. image dedup, global: exact (sha256) then near-duplicate (pHash, Hamming <= radius)
       over the hash columns of all parts; every decision is a deterministic function of
       the rows, not of their order.
    3. write: part N becomes shard N (`NNNNN.tar` + `.parquet` with every row, failures
       included, + `_stats.json`), then `sizes.json` and `manifest.json`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import logging
import multiprocessing
from collections.abc import Iterable

import pyarrow as pa
import pyarrow.parquet as pq

from crawlers.images import fetch_images
from filters.dedup import dedup_images
from filters.image_rules import image_rules
from filters.neardup import remove_near_duplicates
from pipeline.config import PipelineConfig, ShardsConfig, save_config
from pipeline.errors import PipelineError
from pipeline.io import is_done, mark_done, read_pairs, remove_stale_temporaries, write_table
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
from shards.images import ImageProcessError, ProcessedImage, process_image
from shards.layout import plan_shards, write_manifest, write_sizes_json
from shards.writer import ShardWriter

log = logging.getLogger(__name__)

IMAGE_COLUMN = "image"
STAGED_SCHEMA = PAIR_SCHEMA.append(pa.field(IMAGE_COLUMN, pa.binary()))


def part_name(part: int) -> str:
    return f"part-{part:05d}"


# ------------------------------------------------------------- pass 1: fetch + process


def process_task(data: bytes, config: ShardsConfig) -> tuple[ProcessedImage | None, str, str]:
    """Decode, resize, encode and hash one image; runs in a worker process."""
    try:
        return process_image(data, config), STATUS_SUCCESS, ""
    except ImageProcessError as exc:
        return None, exc.status, str(exc)


async def fetch_part(
    pairs: list[Pair], config: ShardsConfig, stats: StageStats, pool: concurrent.futures.Executor
) -> list[tuple[Pair, bytes | None]]:
    """Download a part's images while the pool processes those already downloaded."""
    loop = asyncio.get_running_loop()
    slots = asyncio.Semaphore(4 * max(1, config.workers))
    results: list[tuple[Pair, bytes | None]] = []

    async def process(pair: Pair, data: bytes) -> None:
        try:
            image, status, error = await loop.run_in_executor(pool, process_task, data, config)
        finally:
            slots.release()
        if image is None:
            results.append((dataclasses.replace(pair, status=status, error_message=error), None))
        else:
            results.append((image_rules(image.annotate(pair), config), image.data))

    tasks = []
    async for pair, data in fetch_images(pairs, config, stats):
        if data is None or pair.status != STATUS_SUCCESS:
            results.append((pair, None))
            continue
        await slots.acquire()
        tasks.append(asyncio.create_task(process(pair, data)))
    await asyncio.gather(*tasks)
    results.sort(key=lambda item: item[0].uid)
    return results


def staged_table(results: list[tuple[Pair, bytes | None]]) -> pa.Table:
    table = pairs_to_table(pair for pair, _ in results)
    images = pa.array([data for _, data in results], type=pa.binary())
    return table.append_column(IMAGE_COLUMN, images)


def fetch_parts(
    plan: list[list[Pair]], config: ShardsConfig, layout: RunLayout, stats: StageStats
) -> None:
    context = multiprocessing.get_context("spawn")  # the sandbox may be serving from a thread
    with concurrent.futures.ProcessPoolExecutor(config.workers, mp_context=context) as pool:
        for part, pairs in enumerate(plan):
            if is_done(layout.images_dir, part_name(part)):
                continue
            results = asyncio.run(fetch_part(pairs, config, stats, pool))
            write_table(layout.images_dir / f"{part_name(part)}.parquet", staged_table(results))
            mark_done(layout.images_dir, part_name(part), {"rows": len(results)})
            log.info("shards: fetched part %d (%d images)", part, len(results))


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


def write_shard(
    part: int, layout: RunLayout, decisions: dict[str, str], config: ShardsConfig
) -> list[Pair]:
    """Write shard `part` from its staged rows; returns the rows as written."""
    table = pq.read_table(layout.images_dir / f"{part_name(part)}.parquet")
    images = table.column(IMAGE_COLUMN).to_pylist()
    written = []
    with ShardWriter(layout.shards_dir, part, encode_format=config.encode_format) as writer:
        for pair, data in zip(table_to_pairs(table.drop([IMAGE_COLUMN])), images, strict=True):
            if pair.uid in decisions:
                pair = pair.dropped(decisions[pair.uid])
            image = stored_image(pair, data, config.encode_format) if pair.kept and data else None
            written.append(writer.write(pair, image))
    return written


def shard_rows(layout: RunLayout, part: int) -> list[Pair]:
    return list(read_pairs(layout.shards_dir / f"{part:05d}.parquet"))


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
    for folder in (layout.images_dir, layout.shards_dir):
        remove_stale_temporaries(folder)
    with Timer() as timer:
        with sandbox_if_recorded(config, layout) as web:
            cfg = config.shards
            if web is not None:  # the sandbox is on loopback, refused unless allowed
                cfg = dataclasses.replace(cfg, allow_private_addresses=True)
            fetch_parts(plan, cfg, layout, StageStats("fetch"))
        decisions = image_dedup_decisions(read_staged_pairs(layout, len(plan)), cfg.near_dup_radius)
        rows: list[Pair] = []
        for part in range(len(plan)):
            if is_done(layout.shards_dir, f"{part:05d}"):
                rows += shard_rows(layout, part)
            else:
                rows += write_shard(part, layout, decisions, cfg)
        list(tally(rows, stats))
        write_sizes_json(layout.shards_dir)
        write_manifest(layout.shards_dir)
    stats.seconds = timer.seconds
    stats.count("shards", len(plan))
    stats.save(layout.stats_file("shards"))
    save_config(config, layout.shards_dir / "config.toml")
    mark_done(layout.shards_dir, "shards", {"shards": len(plan), "samples": stats.kept})
    return stats
