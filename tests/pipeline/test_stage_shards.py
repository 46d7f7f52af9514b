"""The shards stage: the plan from the uid ranges, the fetch pass (staged parts, markers,
resume), the whole stage on a local image server, and retrying only the failures."""

from __future__ import annotations

from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

import pyarrow.parquet as pq
import pytest

from core.config import PipelineConfig, load_config
from core.io import clear_done, is_done, mark_done, read_pairs, write_table
from core.layout import RunLayout
from core.record import (
    STATUS_FAILED_DECODE,
    STATUS_FAILED_DOWNLOAD,
    STATUS_SUCCESS,
    Pair,
    pairs_to_table,
    uid_range,
)
from pipeline.stages.shards import (
    IMAGE_COLUMN,
    ShardsJob,
    fetch_part,
    load_plan,
    part_name,
    run_retry_failed,
    run_shards,
)
from tests.services import http_server, reply
from tests.shards.conftest import photo_jpeg

PHOTOS = [f"/img/{i}.jpg" for i in range(5)]
BODIES = {path: photo_jpeg(320, 240, seed=i) for i, path in enumerate(PHOTOS)}
BODIES["/img/garbage.jpg"] = b"\xff\xd8\xff\xe0 not a jpeg"
FLAKY = [f"/flaky/{i}.jpg" for i in range(3)]  # 500 until the server is healed
BODIES |= {path: photo_jpeg(320, 240, seed=10 + i) for i, path in enumerate(FLAKY)}


class ImageHandler(BaseHTTPRequestHandler):
    """Serves BODIES (404 for anything else) and counts the requests per path."""

    hits: ClassVar[dict[str, int]] = {}
    healed: ClassVar[bool] = False

    def do_GET(self) -> None:
        self.hits[self.path] = self.hits.get(self.path, 0) + 1
        body = BODIES.get(self.path)
        if self.path in FLAKY and not self.healed:
            reply(self, 500, b"")
        else:
            reply(self, 200 if body is not None else 404, body or b"")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    ImageHandler.hits = {}
    ImageHandler.healed = False
    with http_server(ImageHandler) as base:
        yield base


def curated(workdir: Path, base: str, paths: list[str], *extra: str) -> PipelineConfig:
    """A run folder whose curation selected one pair per path, in 3 uid ranges."""
    config = load_config(
        None,
        [f"workdir='{workdir}'", "shards.image_size=64", "shards.min_image_side=0",
         "shards.min_image_bytes=0", f"net.allow_private=['{urlsplit(base).netloc}']",
         "shards.retries=0", *extra],
    )  # fmt: skip
    layout = RunLayout(workdir)
    pairs = sorted((Pair(url=base + p, caption=f"picture {p}") for p in paths), key=lambda p: p.uid)
    table = pairs_to_table(pairs)
    ranges = uid_range(table.column("uid"), 3)
    for index in range(3):
        rows = table.filter(ranges == index)
        write_table(f"{layout.selected}/range-{index:05d}.parquet", rows)
    mark_done(layout.curate_dir, "curate")
    return config


def job_for(config: PipelineConfig) -> ShardsJob:
    layout = RunLayout(config.root)
    return ShardsJob(
        config.shards, layout.root, load_plan(layout, config.shards.samples_per_shard), 8
    )


def staged(layout: RunLayout, part: int) -> list[dict[str, Any]]:
    return pq.read_table(f"{layout.images_dir}/{part_name(part)}.parquet").to_pylist()


def test_parts_are_staged_in_uid_order_with_failures_as_rows(tmp_path: Path, server: str):
    paths = [*PHOTOS, "/img/garbage.jpg", "/img/missing.jpg"]
    config = curated(tmp_path, server, paths, "shards.samples_per_shard=4")
    job, layout = job_for(config), RunLayout(tmp_path)
    assert job.plan.shards == 2 and job.plan.rows == 7
    for part in (0, 1):
        fetch_part(job, part)
        assert is_done(layout.images_dir, part_name(part))
    rows = staged(layout, 0) + staged(layout, 1)
    assert [row["uid"] for row in rows] == sorted(row["uid"] for row in rows)
    by_path = {str(row["url"]).removeprefix(server): row for row in rows}
    assert by_path["/img/missing.jpg"]["status"] == STATUS_FAILED_DOWNLOAD
    assert by_path["/img/garbage.jpg"]["status"] == STATUS_FAILED_DECODE
    assert by_path["/img/missing.jpg"][IMAGE_COLUMN] is None
    for path in PHOTOS:
        assert by_path[path]["status"] == STATUS_SUCCESS
        assert (by_path[path]["width"], by_path[path]["height"]) == (85, 64)
        assert bytes(by_path[path][IMAGE_COLUMN])[:2] == b"\xff\xd8"  # encoded JPEG
    metadata = pq.ParquetFile(f"{layout.images_dir}/{part_name(0)}.parquet").metadata
    schema = metadata.schema.to_arrow_schema()
    codecs = {
        schema.field(i).name: metadata.row_group(0).column(i).compression
        for i in range(metadata.num_columns)
    }
    assert codecs[IMAGE_COLUMN] == "UNCOMPRESSED" and codecs["url"] == "ZSTD"


def test_a_rerun_fetches_only_the_parts_without_a_marker(tmp_path: Path, server: str):
    config = curated(tmp_path, server, PHOTOS, "shards.samples_per_shard=3")
    job, layout = job_for(config), RunLayout(tmp_path)
    fetch_part(job, 0)
    fetch_part(job, 1)
    first = staged(layout, 1)
    clear_done(layout.images_dir, part_name(1))
    ImageHandler.hits = {}
    fetch_part(job, 0)
    fetch_part(job, 1)
    assert sorted(server + path for path in ImageHandler.hits) == sorted(r["url"] for r in first)
    assert staged(layout, 1) == first


def shard_bytes(layout: RunLayout) -> dict[str, bytes]:
    folder = Path(layout.shards_dir)
    return {
        p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.suffix in (".tar", ".parquet")
    }


def test_the_stage_and_retrying_only_the_failures(tmp_path: Path, server: str):
    paths = [*PHOTOS, *FLAKY, "/img/missing.jpg"]
    config = curated(tmp_path, server, paths, "shards.samples_per_shard=3", "executor.workers=2")
    layout = RunLayout(tmp_path)
    stats = run_shards(config)
    assert stats.kept == 5 and stats.dropped[STATUS_FAILED_DOWNLOAD] == 4
    rows = {r.url.removeprefix(server): r for r in read_pairs(layout.shards_dir)}
    assert [rows[p].status for p in FLAKY] == [STATUS_FAILED_DOWNLOAD] * 3
    assert [rows[p].key for p in paths] != [None] * len(paths)
    before = shard_bytes(layout)
    affected = {f"{rows[p].shard:05d}" for p in [*FLAKY, "/img/missing.jpg"]}
    ImageHandler.healed, ImageHandler.hits = True, {}
    retried = run_retry_failed(config)
    assert sorted(ImageHandler.hits) == sorted([*FLAKY, "/img/missing.jpg"])  # only failures
    after = shard_bytes(layout)
    for name, data in before.items():
        if name[:5] not in affected:
            assert after[name] == data, f"{name} changed"
    again = {r.url.removeprefix(server): r for r in read_pairs(layout.shards_dir)}
    assert [again[p].status for p in FLAKY] == [STATUS_SUCCESS] * 3
    assert {p: again[p].key for p in paths} == {p: rows[p].key for p in paths}
    assert again["/img/missing.jpg"].status == STATUS_FAILED_DOWNLOAD
    assert retried.kept == 8 and retried.counts["retry_recovered"] == 3
    assert not Path(layout.images_dir).exists() and not Path(layout.shards_work).exists()


def test_a_run_that_selected_nothing_says_so(tmp_path: Path, server: str):
    config = curated(tmp_path, server, [])
    with pytest.raises(Exception, match="selected no pairs"):
        run_shards(config)
