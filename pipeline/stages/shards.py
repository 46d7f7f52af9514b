"""Stage 3: fetch the selected images and write webdataset shards, part by part.

The selected pairs come from curation as uid ranges, each sorted by uid; read in range
order they are the global uid order, and shard N is rows [N x samples_per_shard, (N+1) x
samples_per_shard) of it. So the plan is a function of the selection alone: any number of
workers, either executor, writes the same pair to the same shard at the same index.

    1. fetch (map, one task per shard): the shard's rows are downloaded asynchronously
       while a few threads decode, resize, encode and hash them (Pillow releases the GIL);
       image rules are applied; `images/part-NNNNN.parquet` gets the rows in uid order,
       each with its encoded image, then its marker.
    2. image dedup, as keyed reductions over the hash columns of the staged parts:
       exact (sha256: the smallest uid of a digest wins), then near-duplicates (pHash
       within `near_dup_radius`): every code goes to the buckets of its bands, each
       bucket reports the pairs within the radius, and the greedy pass over those pairs
       alone (uid order: a pair is dropped when a kept pair with a smaller uid is near
       it) decides. No step needs all hashes in one process.
    3. write (one task per shard): part N, with its dedup decisions, becomes shard N
       (`NNNNN.tar` + `.parquet` with every row + `_stats.json`); then `sizes.json` and
       `manifest.json`. The staged parts are removed once every shard is written.

`--retry-failed` (`run_retry_failed`) refetches the rows an earlier run recorded as
failed_to_download and rewrites only the shards that hold them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import functools
import logging
import math
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from core import storage
from core.config import PipelineConfig, ShardsConfig, save_config
from core.errors import PipelineError
from core.failures import failure_reasons, failure_summary
from core.io import (
    align,
    done_info,
    is_done,
    mark_done,
    read_pairs,
    read_parquet,
    remove_stale_temporaries,
    saved_once,
    write_table,
)
from core.layout import RunLayout
from core.parts import part_rows, read_rows
from core.progress import Progress
from core.record import (
    PAIR_SCHEMA,
    STATUS_CANDIDATE,
    STATUS_FAILED_DOWNLOAD,
    STATUS_FAILED_RESIZE,
    STATUS_SUCCESS,
    Pair,
    pairs_to_table,
    table_to_pairs,
)
from core.stats import StageStats, tally
from crawlers.images import fetch_images
from executors import Exchange, Executor, make_executor
from executors.base import bucket_of
from filters.dedup import first_per_key
from filters.image_rules import image_rules
from filters.neardup import band_keys, greedy_drops, near_pairs
from pipeline.stages.web import sandbox_if_recorded
from shards.images import SAVE_FORMATS, ProcessedImage, process_or_fail
from shards.layout import (
    completed_shards,
    parquet_path,
    tar_path,
    write_manifest,
    write_sizes_json,
)
from shards.writer import write_shard

log = logging.getLogger(__name__)

IMAGE_COLUMN = "image"
STAGED_SCHEMA = PAIR_SCHEMA.append(pa.field(IMAGE_COLUMN, pa.binary()))
# Images are ranked by (generation, uid): 0 for a run's own images, 1 for images a retry
# fetched later, so a retried image never displaces one already in a shard.
HASH_SCHEMA = pa.schema(
    [("uid", pa.string()), ("shard", pa.int32()), ("generation", pa.int8()),
     ("sha256", pa.string()), ("phash", pa.uint64())]
)  # fmt: skip
NODE_COLUMNS = ["uid", "shard", "generation"]
IMAGE_RANK = ("generation", "uid")
BAND_SCHEMA = pa.schema(
    [("band", pa.int64()), ("value", pa.uint64()), ("uid", pa.string()), ("shard", pa.int32()),
     ("generation", pa.int8()), ("phash", pa.uint64())]
)  # fmt: skip
STATUS_DUPLICATE = "duplicate"  # dropped as an exact or near duplicate of a kept image
RULE_MESSAGES = {  # img2dataset's error_message where it has the same rule
    "image:too_small": "image too small",
    "image:aspect": "aspect ratio too large",
    "image:too_few_bytes": "image too few bytes",
}
DECISION_SCHEMA = pa.schema([("uid", pa.string()), ("shard", pa.int32()), ("reason", pa.string())])
# What a worker needs, imported once by the fork server rather than by every worker.
WORKER_MODULES = ["pipeline.stages.shards"]


def part_name(part: int) -> str:
    return f"part-{part:05d}"


# ------------------------------------------------------------------ the plan


@dataclass(frozen=True)
class ShardPlan:
    """Which rows of which selected range each shard holds."""

    ranges: tuple[str, ...]  # curate/selected/range-*.parquet, in uid order
    offsets: tuple[int, ...]  # global index of each range's first row; then the total
    samples_per_shard: int

    @property
    def rows(self) -> int:
        return self.offsets[-1]

    @property
    def shards(self) -> int:
        return math.ceil(self.rows / self.samples_per_shard)

    def slices(self, shard: int) -> list[tuple[str, int, int]]:
        """(range file, first row, end row) of every range holding rows of `shard`."""
        start = shard * self.samples_per_shard
        stop = min(start + self.samples_per_shard, self.rows)
        found = []
        for index, location in enumerate(self.ranges):
            first, end = self.offsets[index], self.offsets[index + 1]
            if first < stop and end > start:
                found.append((location, max(start, first) - first, min(stop, end) - first))
        return found

    def to_dict(self) -> dict[str, Any]:
        return {
            "ranges": list(self.ranges),
            "offsets": list(self.offsets),
            "samples_per_shard": self.samples_per_shard,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ShardPlan:
        return cls(tuple(data["ranges"]), tuple(data["offsets"]), int(data["samples_per_shard"]))


def make_plan(layout: RunLayout, samples_per_shard: int) -> ShardPlan:
    if not is_done(layout.curate_dir, "curate"):
        raise PipelineError(f"no finished curation in {layout.curate_dir}: run curate first")
    ranges = storage.list_files(layout.selected, ".parquet")
    offsets = [0]
    for location in ranges:
        offsets.append(offsets[-1] + part_rows(location))
    return ShardPlan(tuple(ranges), tuple(offsets), samples_per_shard)


def load_plan(layout: RunLayout, samples_per_shard: int) -> ShardPlan:
    path = storage.join(layout.shards_work, "plan.json")
    return ShardPlan.from_dict(
        saved_once(path, lambda: make_plan(layout, samples_per_shard).to_dict())
    )


@dataclass(frozen=True)
class ShardsJob:
    """Everything a task needs, pickled to whichever worker runs it."""

    config: ShardsConfig
    root: str
    plan: ShardPlan
    buckets: int  # of the dedup reductions

    @property
    def layout(self) -> RunLayout:
        return RunLayout(self.root)

    @property
    def work(self) -> str:
        return self.layout.shards_work

    def staged(self, shard: int) -> str:
        return storage.join(self.layout.images_dir, f"{part_name(shard)}.parquet")

    def exchange(self, name: str, schema: pa.Schema, buckets: int | None = None) -> Exchange:
        root = storage.join(self.work, f"exchange-{name}")
        return Exchange(root, self.buckets if buckets is None else buckets, schema)

    def decisions(self) -> Exchange:
        return self.exchange("decisions", DECISION_SCHEMA, max(1, self.plan.shards))


# ------------------------------------------------------------------ pass 1: fetch + process


def shard_pairs(plan: ShardPlan, shard: int) -> list[Pair]:
    tables = [
        align(read_rows(location, start, stop)) for location, start, stop in plan.slices(shard)
    ]
    return [p for table in tables for p in table_to_pairs(table)]


def processed(
    pair: Pair, outcome: tuple[ProcessedImage | None, str, str], config: ShardsConfig
) -> tuple[Pair, bytes | None]:
    """A downloaded pair with its processing outcome: annotated and ruled, or failed."""
    image, status, error = outcome
    if image is None:
        return dataclasses.replace(pair, status=status, error_message=error), None
    return dropped_after_download(image_rules(image.annotate(pair), config)), image.data


def dropped_after_download(pair: Pair) -> Pair:
    """`pair`, whose image was downloaded, with a status that says why it is not in a
    shard when a rule dropped it: `success` means the sample is in a tar.

    Image rules give img2dataset's `failed_to_resize` (its own size and aspect rules do),
    with img2dataset's message; exact and near duplicates, which img2dataset does not
    look for, are `duplicate`. The reason stays in `drop_reason`."""
    reason = pair.drop_reason
    if reason is None or pair.status != STATUS_SUCCESS:
        return pair
    if reason.startswith("image:"):
        message = RULE_MESSAGES.get(reason, reason)
        return dataclasses.replace(pair, status=STATUS_FAILED_RESIZE, error_message=message)
    return dataclasses.replace(pair, status=STATUS_DUPLICATE, error_message=reason)


def process_pair(
    index: int, pair: Pair, data: bytes, config: ShardsConfig
) -> tuple[Pair, bytes | None]:
    """Decode, resize, encode and hash one downloaded image, then apply the image rules."""
    return processed(pair, process_or_fail(data, config), config)


async def fetch_and_process(
    pairs: list[Pair], config: ShardsConfig, stats: StageStats
) -> list[tuple[Pair, bytes | None]]:
    """Download every pair's image while `config.threads` threads process the bytes."""
    return await fetch_and_handle(
        pairs, config, stats, functools.partial(process_pair, config=config)
    )


R = TypeVar("R")


async def fetch_and_handle(
    pairs: list[Pair],
    config: ShardsConfig,
    stats: StageStats,
    handle: Callable[[int, Pair, bytes], tuple[Pair, R | None]],
) -> list[tuple[Pair, R | None]]:
    """Download every pair's image while `config.threads` threads `handle` (position in
    `pairs`, pair, bytes); a pair that failed to download comes back with None. Every pair
    comes back once: when nothing finishes for `config.stall_seconds` (the watchdog), the
    rest come back as failed_to_download, stalled.

    `config.threads = 0` handles each image in the event loop's own thread, between
    downloads: no hand-off to a thread and back, and no contention for the GIL, which is
    faster where there is one such process per core. An image then holds up the downloads
    while it is processed (a few ms; a decode is bounded by the pixel and byte limits), and
    the watchdog sees only downloads that stall."""
    loop = asyncio.get_running_loop()
    slots = asyncio.Semaphore(4 * max(1, config.threads))  # bytes waiting, bounded
    results: dict[int, tuple[Pair, R | None]] = {}
    running: set[asyncio.Task[None]] = set()
    # Each pair is tagged with its position (in `key`, restored on the way out).
    tagged = [dataclasses.replace(pair, key=str(index)) for index, pair in enumerate(pairs)]
    inline = config.threads == 0
    threads = (
        None if inline else concurrent.futures.ThreadPoolExecutor(config.threads, "process-image")
    )
    stalled = False

    async def process(index: int, pair: Pair, data: bytes) -> None:
        try:
            results[index] = await loop.run_in_executor(threads, handle, index, pair, data)
        finally:
            slots.release()

    downloads = fetch_images(tagged, config, stats).__aiter__()
    try:
        while True:
            try:
                pair, data = await asyncio.wait_for(anext(downloads), config.stall_seconds or None)
            except StopAsyncIteration:
                break
            except TimeoutError:
                stalled = True
                break
            index = int(pair.key or 0)
            if data is None or pair.status != STATUS_SUCCESS:
                results[index] = (pair, None)
                continue
            if inline:
                results[index] = handle(index, pair, data)
                continue
            try:
                await asyncio.wait_for(slots.acquire(), config.stall_seconds or None)
            except TimeoutError:  # the threads are stuck
                stalled = True
                break
            task = asyncio.create_task(process(index, pair, data))
            running.add(task)
            task.add_done_callback(running.discard)
        if running:
            _, late = await asyncio.wait(running, timeout=config.stall_seconds or None)
            stalled = stalled or bool(late)
    finally:
        close = getattr(downloads, "aclose", None)  # an async generator's
        if close is not None:
            await close()
        if threads is not None:
            threads.shutdown(wait=not stalled, cancel_futures=True)
    if stalled:
        stats.drop("stalled", len(pairs) - len(results))
        log.warning("watchdog: no image finished for %g s; %d of %d rows failed as stalled",
                    config.stall_seconds, len(pairs) - len(results), len(pairs))  # fmt: skip
    return [restored(pairs[i], results.get(i), config.stall_seconds) for i in range(len(pairs))]


def restored(
    original: Pair, result: tuple[Pair, R | None] | None, stall_seconds: float
) -> tuple[Pair, R | None]:
    """A pair's outcome with its key as it came in; a pair the watchdog gave up on fails."""
    if result is None:
        message = f"stalled: no image finished for {stall_seconds:g} s"
        return dataclasses.replace(
            original, status=STATUS_FAILED_DOWNLOAD, error_message=message
        ), None
    pair, value = result
    return dataclasses.replace(pair, key=original.key), value


def staged_table(results: list[tuple[Pair, bytes | None]]) -> pa.Table:
    results = sorted(results, key=lambda item: item[0].uid)
    table = pairs_to_table(pair for pair, _ in results)
    images = pa.array([data for _, data in results], type=pa.binary())
    return table.append_column(IMAGE_COLUMN, images)


def write_staged(location: str, results: list[tuple[Pair, bytes | None]]) -> None:
    """A staged part: the rows in uid order, the encoded images stored as they are."""
    codecs = {field.name: "zstd" for field in PAIR_SCHEMA} | {IMAGE_COLUMN: "none"}
    write_table(location, staged_table(results), compression=codecs)


def fetch_part(job: ShardsJob, shard: int) -> dict[str, Any]:
    """One task: fetch, process and stage the images of shard `shard` (resumable)."""
    folder = job.layout.images_dir
    name = part_name(shard)
    if is_done(folder, name):
        return done_info(folder, name)
    pairs = shard_pairs(job.plan, shard)
    stats = StageStats("fetch")
    results = asyncio.run(fetch_and_process(pairs, job.config, stats))
    if len(results) != len(pairs):
        raise RuntimeError(f"shard {shard}: {len(results)} of {len(pairs)} rows came back")
    write_staged(job.staged(shard), results)
    info = {"rows": len(results), "fetch": stats.to_dict()}
    mark_done(folder, name, info)
    return info


# ------------------------------------------------------------------ pass 2: image dedup


def kept_hashes(table: pa.Table, shard: int, generation: int) -> pa.Table:
    """The rows of shard `shard` still kept after download and image rules, with hashes."""
    kept = pc.and_(
        table.column("drop_reason").is_null(), pc.equal(table.column("status"), STATUS_SUCCESS)
    )
    kept = table.filter(pc.and_(kept, table.column("sha256").is_valid()))
    return pa.table(
        {
            "uid": kept.column("uid"),
            "shard": pa.array([shard] * kept.num_rows, type=pa.int32()),
            "generation": pa.array([generation] * kept.num_rows, type=pa.int8()),
            "sha256": kept.column("sha256"),
            "phash": kept.column("phash"),
        },
        schema=HASH_SCHEMA,
    )


Source = tuple[int, str, int, int]  # (index, file of rows, its shard, its generation)


def spread_hashes(job: ShardsJob, source: Source) -> dict[str, Any]:
    """Map: the kept hashes of one file of rows (a staged part, or a written shard's
    parquet when retrying) into the sha256 exchange."""
    index, location, shard, generation = source
    name = f"hashes-{index:05d}"
    if not is_done(job.work, name):
        table = align(read_parquet(location, columns=HASH_SOURCE_COLUMNS))
        hashes = kept_hashes(table, shard, generation)
        exchange = job.exchange("sha256", HASH_SCHEMA)
        exchange.write(name, hashes, bucket_of(hashes.column("sha256"), exchange.buckets))
        mark_done(job.work, name, {"rows": hashes.num_rows})
    return done_info(job.work, name)


def decisions_table(table: pa.Table, reason: str) -> pa.Table:
    reasons = pa.array([reason] * table.num_rows, type=pa.string())
    return pa.table({"uid": table.column("uid"), "shard": table.column("shard"), "reason": reasons})


HASH_SOURCE_COLUMNS = ["uid", "status", "drop_reason", "sha256", "phash"]


def band_rows(table: pa.Table, radius: int) -> pa.Table:
    """One row per (code, band): what the pHash buckets are keyed by."""
    codes = table.column("phash").to_numpy(zero_copy_only=False).astype(np.uint64)
    bands, values, rows = band_keys(codes, radius)
    index = pa.array(rows)
    return pa.table(
        {
            "band": pa.array(bands, pa.int64()),
            "value": pa.array(values, pa.uint64()),
            "uid": table.column("uid").take(index),
            "shard": table.column("shard").take(index),
            "generation": table.column("generation").take(index),
            "phash": table.column("phash").take(index),
        }
    )


def band_bucket(table: pa.Table, buckets: int) -> np.ndarray:
    keys = pc.binary_join_element_wise(
        table.column("band").cast(pa.string()), table.column("value").cast(pa.string()), ":"
    )
    return bucket_of(keys, buckets)


def exact_bucket(job: ShardsJob, bucket: int, rows: pa.Table) -> dict[str, Any]:
    """Reduce: the smallest uid per sha256 wins; losers are decisions, winners go on to
    the pHash band exchange."""
    name = f"sha256-{bucket:05d}"
    if not is_done(job.work, name):
        winners = first_per_key(rows, "sha256", rank=IMAGE_RANK)
        mask = pa.array(winners)
        losers = rows.filter(pc.invert(mask))
        job.decisions().write(
            name, decisions_table(losers, "dedup:sha256"), losers.column("shard").to_numpy()
        )
        if job.config.near_dup_radius >= 0:
            bands = band_rows(rows.filter(mask), job.config.near_dup_radius)
            exchange = job.exchange("bands", BAND_SCHEMA)
            exchange.write(name, bands, band_bucket(bands, exchange.buckets))
        info = {"rows": rows.num_rows, "dropped": {"dedup:sha256": losers.num_rows}}
        mark_done(job.work, name, info)
    return done_info(job.work, name)


EDGE_SCHEMA = pa.schema(
    [(f"{name}_{end}", HASH_SCHEMA.field(name).type) for end in "ab" for name in NODE_COLUMNS]
)


def near_bucket(job: ShardsJob, bucket: int, rows: pa.Table) -> dict[str, Any]:
    """Reduce: every pair of distinct images within the radius among one bucket's codes."""
    name = f"bands-{bucket:05d}"
    if not is_done(job.work, name):
        table = rows.group_by([*NODE_COLUMNS, "phash"]).aggregate([])
        table = table.sort_by([(name, "ascending") for name in IMAGE_RANK])
        codes = table.column("phash").to_numpy(zero_copy_only=False).astype(np.uint64)
        pairs = near_pairs(np.arange(len(codes), dtype=np.int64), codes, job.config.near_dup_radius)
        ends = {"a": pa.array(pairs[:, 0]), "b": pa.array(pairs[:, 1])}
        edges = pa.table(
            {f"{n}_{end}": table.column(n).take(ends[end]) for end in "ab" for n in NODE_COLUMNS},
            schema=EDGE_SCHEMA,
        )
        write_table(storage.join(job.work, "edges", f"{name}.parquet"), edges)
        mark_done(job.work, name, {"rows": rows.num_rows, "edges": edges.num_rows})
    return done_info(job.work, name)


def resolve_near_duplicates(job: ShardsJob) -> int:
    """The greedy pass over the near pairs alone (memory O(pairs)); returns the drops."""
    name = "neardup"
    if is_done(job.work, name):
        return int(done_info(job.work, name)["dropped"])
    files = storage.list_files(storage.join(job.work, "edges"), ".parquet")
    edges = (
        pa.concat_tables([read_parquet(f) for f in files]) if files else EDGE_SCHEMA.empty_table()
    )
    nodes = pa.concat_tables(
        [pa.table({n: edges.column(f"{n}_{end}") for n in NODE_COLUMNS}) for end in "ab"]
    )
    nodes = nodes.group_by(NODE_COLUMNS).aggregate([])
    nodes = nodes.sort_by([(name, "ascending") for name in IMAGE_RANK])
    rank_a = pc.index_in(edges.column("uid_a"), value_set=nodes.column("uid")).to_numpy()
    rank_b = pc.index_in(edges.column("uid_b"), value_set=nodes.column("uid")).to_numpy()
    pairs = np.unique(np.sort(np.stack([rank_a, rank_b], axis=1), axis=1), axis=0)
    dropped = greedy_drops(np.arange(nodes.num_rows, dtype=np.int64), pairs)
    losers = nodes.take(pa.array(dropped))
    job.decisions().write(
        name, decisions_table(losers, "neardup:phash"), losers.column("shard").to_numpy()
    )
    mark_done(job.work, name, {"dropped": losers.num_rows, "pairs": len(pairs)})
    return losers.num_rows


# ------------------------------------------------------------------ pass 3: write shards


def drop_reasons(decisions: pa.Table) -> dict[str, str]:
    """uid -> drop reason, from a shard's dedup decisions."""
    uids, reasons = decisions.column("uid").to_pylist(), decisions.column("reason").to_pylist()
    return dict(zip(uids, reasons, strict=True))


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


def write_part_shard(job: ShardsJob, shard: int, decisions: pa.Table) -> dict[str, Any]:
    """Reduce over the decisions by shard: staged part `shard` becomes shard `shard`."""
    name = f"write-{shard:05d}"
    if is_done(job.work, name):
        return done_info(job.work, name)
    drops = drop_reasons(decisions)
    table = read_parquet(job.staged(shard))
    images = table.column(IMAGE_COLUMN).to_pylist()
    samples = []
    for pair, data in zip(table_to_pairs(table.drop([IMAGE_COLUMN])), images, strict=True):
        if pair.uid in drops:
            pair = dropped_after_download(pair.dropped(drops[pair.uid]))
        image = stored_image(pair, data, job.config.encode_format) if pair.kept and data else None
        samples.append((pair, image))
    cfg = job.config
    rows = write_shard(
        job.layout.shards_dir, shard, samples, cfg.encode_format, cfg.samples_per_shard
    )
    stats = StageStats("shards")
    list(tally(rows, stats))
    info = stats.to_dict() | {"rows": len(rows)}
    mark_done(job.work, name, info)
    return info


# ------------------------------------------------------------------ the stage


def dedup_images(job: ShardsJob, executor: Executor, sources: list[Source], quiet: bool) -> None:
    """Exact then near-duplicate image dedup over `sources` (see `spread_hashes`)."""
    with Progress("shards", "hash exchange", len(sources), quiet) as progress:
        progress.drain(executor.map(functools.partial(spread_hashes, job), sources))
    buckets = list(range(job.buckets))
    with Progress("shards", "exact dedup", job.buckets, quiet) as progress:
        exchange = job.exchange("sha256", HASH_SCHEMA)
        progress.drain(executor.reduce(exchange, functools.partial(exact_bucket, job), buckets))
    with Progress("shards", "near-dup bands", job.buckets, quiet) as progress:
        exchange = job.exchange("bands", BAND_SCHEMA)
        progress.drain(executor.reduce(exchange, functools.partial(near_bucket, job), buckets))
    resolve_near_duplicates(job)


def run_passes(job: ShardsJob, executor: Executor, quiet: bool) -> list[dict[str, Any]]:
    """Fetch, dedup and write; returns the download stats of each part and each shard's tally."""
    shards = list(range(job.plan.shards))
    with Progress("shards", "fetch", len(shards), quiet) as progress:
        fetched = progress.drain(executor.map(functools.partial(fetch_part, job), shards))
    dedup_images(job, executor, [(s, job.staged(s), s, 0) for s in shards], quiet)
    with Progress("shards", "write", len(shards), quiet) as progress:
        calls = executor.reduce(job.decisions(), functools.partial(write_part_shard, job), shards)
        written = progress.drain(calls)
    return [*({"fetch": f["fetch"]} for f in fetched), *written]


def shards_stats(infos: list[dict[str, Any]]) -> StageStats:
    stats = StageStats("shards")
    fetch = StageStats("fetch")  # download outcomes in detail
    for info in infos:
        if "fetch" in info:
            fetch.merge(StageStats.from_dict(info["fetch"]))
        else:
            stats.merge(StageStats.from_dict(info))
    # The rows say failed_to_download; the downloader knows why (http_404, timeout...).
    for reason, n in fetch.dropped.items():
        stats.count(f"download:{reason}", n)
    for name, n in fetch.counts.items():
        stats.count(f"download_{name}", n)
    return stats


def stage_executor(config: PipelineConfig) -> Executor:
    return make_executor(
        config.executor.kind, config.executor.workers, config.executor.ray_address,
        preload=WORKER_MODULES,
    )  # fmt: skip


def run_shards(config: PipelineConfig, quiet: bool = False) -> StageStats:
    layout = RunLayout(config.root)
    if is_done(layout.shards_dir, "shards"):
        log.info("shards: already done in %s", layout.shards_dir)
        return StageStats.load(layout.stats_file("shards"))
    plan = load_plan(layout, config.shards.samples_per_shard)
    if plan.rows == 0:
        raise PipelineError(
            "curation selected no pairs, so there is nothing to download: see "
            f"{layout.stats_file('curate')} for why every candidate was dropped"
        )
    for folder in (layout.images_dir, layout.shards_dir):
        remove_stale_temporaries(folder)
    started = time.perf_counter()
    with sandbox_if_recorded(config, layout) as web:
        cfg = config.shards
        if web is not None:  # the sandbox is on loopback: allow exactly its origins
            cfg = dataclasses.replace(cfg, net=cfg.net.allowing(web.base_urls))
        buckets = max(8, math.ceil(plan.rows / config.part_rows))
        job = ShardsJob(cfg, layout.root, plan, buckets)
        with stage_executor(config) as executor:
            stats = shards_stats(run_passes(job, executor, quiet))
    write_sizes_json(layout.shards_dir)
    write_manifest(layout.shards_dir)
    stats.seconds = time.perf_counter() - started
    stats.count("shards", plan.shards)
    stats.save(layout.stats_file("shards"))
    summary = failure_summary(stats.seen, stats.kept, failure_reasons(stats))
    if stats.kept == 0:
        # Not marked done, staging removed: a rerun with the fix fetches everything again.
        storage.remove_tree(layout.images_dir)
        storage.remove_tree(layout.shards_work)
        raise PipelineError(
            f"shards: no sample reached a shard: {summary or 'no row was fetched'}; "
            f"counts by reason in "
            f"{layout.stats_file('shards')}"
        )
    if summary is not None:
        log.warning("shards: %s", summary)
    save_config(config, storage.join(layout.shards_dir, "config.toml"))
    mark_done(layout.shards_dir, "shards", {"shards": plan.shards, "samples": stats.kept})
    storage.remove_tree(layout.images_dir)
    storage.remove_tree(layout.shards_work)
    return stats


# ------------------------------------------------------------------ retry the failures


def failed_rows(table: pa.Table) -> pa.Array:
    return pc.equal(table.column("status"), STATUS_FAILED_DOWNLOAD)


def refetch_shard(job: ShardsJob, shard: int) -> dict[str, Any]:
    """One task: fetch again the rows of shard `shard` that failed to download."""
    folder = job.layout.images_dir
    name = part_name(shard)
    if is_done(folder, name):
        return done_info(folder, name)
    rows = align(read_parquet(parquet_path(job.layout.shards_dir, shard)))
    again = [
        dataclasses.replace(
            pair, status=STATUS_CANDIDATE, error_message=None, http_status=None, content_type=None
        )
        for pair in table_to_pairs(rows.filter(failed_rows(rows)))
    ]
    stats = StageStats("fetch")
    results = asyncio.run(fetch_and_process(again, job.config, stats))
    write_staged(job.staged(shard), results)
    info = {"rows": len(results), "fetch": stats.to_dict()}
    mark_done(folder, name, info)
    return info


def shard_images(folder: str, shard: int) -> dict[str, bytes]:
    """The encoded image of every sample in a written shard, by key."""
    images: dict[str, bytes] = {}
    with storage.open_input(tar_path(folder, shard)) as handle, tarfile.open(fileobj=handle) as tar:
        for member in tar:
            key, _, extension = member.name.rpartition(".")
            if extension in SAVE_FORMATS:
                extracted = tar.extractfile(member)
                assert extracted is not None
                images[key] = extracted.read()
    return images


def rewrite_shard(job: ShardsJob, shard: int, decisions: pa.Table) -> dict[str, Any]:
    """Reduce over the decisions by shard: shard `shard` again, its retried rows updated and
    everything else as it was (same rows, keys and images)."""
    name = f"rewrite-{shard:05d}"
    if is_done(job.work, name):
        return done_info(job.work, name)
    drops = drop_reasons(decisions)
    staged = read_parquet(job.staged(shard))
    retried = dict(
        zip(
            staged.column("uid").to_pylist(),
            zip(
                table_to_pairs(staged.drop([IMAGE_COLUMN])),
                staged.column(IMAGE_COLUMN).to_pylist(),
                strict=True,
            ),
            strict=True,
        )
    )
    folder = job.layout.shards_dir
    images = shard_images(folder, shard)
    fmt = job.config.encode_format
    samples: list[tuple[Pair, ProcessedImage | None]] = []
    for old in read_pairs(parquet_path(folder, shard)):
        pair, data = retried.get(old.uid, (old, images.get(old.key or "")))
        if pair.uid in drops:
            pair = dropped_after_download(pair.dropped(drops[pair.uid]))
        samples.append((pair, stored_image(pair, data, fmt) if pair.kept and data else None))
    rows = write_shard(folder, shard, samples, fmt, job.config.samples_per_shard)
    recovered = sum(1 for row in rows if row.uid in retried and row.kept)
    info = {"retried": len(retried), "recovered": recovered}
    mark_done(job.work, name, info)
    return info


def shard_folder_stats(folder: str) -> StageStats:
    """The tally of every row of every written shard."""
    stats = StageStats("shards")
    for shard in sorted(completed_shards(folder)):
        list(tally(read_pairs(parquet_path(folder, shard)), stats))
    return stats


def run_retry_failed(config: PipelineConfig, quiet: bool = False) -> StageStats:
    """Refetch only the rows recorded as failed_to_download; rewrite only their shards.

    A retried image that duplicates (exactly or nearly) an image already in a shard, or an
    earlier retried one, is the one dropped: what the shards hold never changes, and every
    shard without a failure stays byte-identical.
    """
    layout = RunLayout(config.root)
    folder = layout.shards_dir
    if not is_done(folder, "shards"):
        raise PipelineError(f"nothing to retry: no finished shards in {folder}; run shards first")
    shards = sorted(completed_shards(folder))
    affected = [
        s for s in shards
        if pc.sum(failed_rows(read_parquet(parquet_path(folder, s), columns=["status"]))).as_py()
    ]  # fmt: skip
    previous = StageStats.load(layout.stats_file("shards"))
    if not affected:
        log.warning("shards: --retry-failed: no row failed to download, nothing to retry")
        return previous
    storage.remove_tree(layout.shards_work)
    storage.remove_tree(layout.images_dir)
    started = time.perf_counter()
    with sandbox_if_recorded(config, layout) as web:
        cfg = config.shards
        if web is not None:
            cfg = dataclasses.replace(cfg, net=cfg.net.allowing(web.base_urls))
        # The retry reads the shards, not the selection: its plan only tells how many shards
        # there are (every row the first run recorded, cut as it cut them).
        rows = int(previous.seen)
        plan = ShardPlan((), (0, rows), cfg.samples_per_shard)
        job = ShardsJob(cfg, layout.root, plan, max(8, math.ceil(rows / config.part_rows)))
        with stage_executor(config) as executor:
            with Progress("shards", "refetch", len(affected), quiet) as progress:
                fetched = progress.drain(
                    executor.map(functools.partial(refetch_shard, job), affected)
                )
            sources = [(i, parquet_path(folder, s), s, 0) for i, s in enumerate(shards)]
            sources += [(len(shards) + i, job.staged(s), s, 1) for i, s in enumerate(affected)]
            dedup_images(job, executor, sources, quiet)
            with Progress("shards", "rewrite", len(affected), quiet) as progress:
                calls = executor.reduce(
                    job.decisions(), functools.partial(rewrite_shard, job), affected
                )
                rewritten = progress.drain(calls)
    stats = shard_folder_stats(folder)
    stats.counts.update({k: v for k, v in previous.counts.items() if not k.startswith("retry")})
    fetch = shards_stats([{"fetch": f["fetch"]} for f in fetched])
    for name, n in fetch.counts.items():
        stats.count(f"retry_{name}", n)
    stats.count("retry_rows", sum(r["retried"] for r in rewritten))
    stats.count("retry_recovered", sum(r["recovered"] for r in rewritten))
    stats.count("retry_shards", len(affected))
    stats.seconds = previous.seconds + time.perf_counter() - started
    write_sizes_json(folder)
    write_manifest(folder)
    stats.save(layout.stats_file("shards"))
    storage.remove_tree(layout.images_dir)
    storage.remove_tree(layout.shards_work)
    log.info("shards: retried %d rows in %d shards, %d now in a shard", stats.counts["retry_rows"],
             len(affected), stats.counts["retry_recovered"])  # fmt: skip
    return stats
